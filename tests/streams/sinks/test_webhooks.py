"""Webhook delivery against a real HTTP(S) receiver on loopback, verified by an independent verifier.

The verifier is svix 1.83.0's ``svix.webhooks.Webhook``: its own HMAC code, not the
``standardwebhooks`` package that signs (later svix releases delegate to it).
"""

from __future__ import annotations

import inspect
import json
import random
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx2
import pytest
import svix.webhooks
import trustme
from svix.webhooks import Webhook as SvixWebhook
from svix.webhooks import WebhookVerificationError

from processors.errors import ConfigurationError, InvalidWebhookSecret
from streams.config import Settings, load_settings, parse_networks, parse_schedule
from streams.runtime.egress import EgressGuard
from streams.sinks.webhooks import (
    JITTER,
    MAX_PAYLOAD_BYTES,
    MAX_RETRY_AFTER_S,
    THROTTLE_COOLDOWN_S,
    AttemptResult,
    TargetLimiter,
    WebhookConfig,
    WebhookSecret,
    new_client,
    new_secret,
    next_delay,
    parse_retry_after,
    payload_for,
    send,
    target_key,
    webhook_headers,
)
from streams.wire.serde import Serde

LOOPBACK = EgressGuard(allow_networks=parse_networks("127.0.0.1/32,::1/128"))
SCHEDULE = Settings().webhook_schedule
SECRET = new_secret()
OLD_SECRET = new_secret()
PAYLOAD = b'{"data":{"image_id":"img-1"},"timestamp":"2026-01-01T00:00:00.000Z","type":"image.completed"}'


# --- a real receiver -------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (timeout tests) makes the reply fail: expected, not news."""


class Receiver:
    """An HTTP server on 127.0.0.1 answering from a script: (status, headers, delay) per request."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.script: deque[tuple[int, dict[str, str], float]] = deque()
        self.seen: list[Seen] = []
        self._stop = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                receiver.seen.append(Seen(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                status, headers, delay = receiver.script.popleft() if receiver.script else (204, {}, 0.0)
                if delay:
                    receiver._stop.wait(delay)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def url(self, path: str = "/hook", host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def close(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def client() -> Iterator[httpx2.Client]:
    with new_client(timeout_s=5) as c:
        yield c


def deliver(client: httpx2.Client, url: str, *, secrets: Sequence[WebhookSecret | str] = (SECRET,), **kw: Any) -> Any:
    webhook_id = kw.pop("webhook_id", "evt-1")
    options: dict[str, Any] = {"timeout_s": 5.0, "guard": LOOPBACK, "client": client, **kw}
    return send(url, webhook_id, PAYLOAD, secrets, **options)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- signing, verified independently --------------------------------------------------


def test_the_verifier_is_independent_of_the_signing_library() -> None:
    source = inspect.getsource(svix.webhooks)
    assert "standardwebhooks" not in source and "hmac.new" in source


def test_a_2xx_is_delivered_with_standard_headers_and_a_signature_svix_accepts(
    receiver: Receiver, client: httpx2.Client
) -> None:
    receiver.script.append((200, {}, 0.0))
    result = deliver(client, receiver.url())
    assert result == AttemptResult(delivered=True, status_code=200, address="127.0.0.1", duration_s=result.duration_s)
    (seen,) = receiver.seen
    assert seen.body == PAYLOAD
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["user-agent"] == "darkroom-webhooks/1"
    assert seen.headers["webhook-id"] == "evt-1"
    assert abs(int(seen.headers["webhook-timestamp"]) - time.time()) < 60
    assert seen.headers["webhook-signature"].startswith("v1,")
    assert SvixWebhook(SECRET).verify(seen.body, seen.headers) == json.loads(PAYLOAD)


def test_during_rotation_either_secret_verifies_and_no_other_does(receiver: Receiver, client: httpx2.Client) -> None:
    assert deliver(client, receiver.url(), secrets=[SECRET, OLD_SECRET]).delivered
    (seen,) = receiver.seen
    assert len(seen.headers["webhook-signature"].split(" ")) == 2
    SvixWebhook(SECRET).verify(seen.body, seen.headers)
    SvixWebhook(OLD_SECRET).verify(seen.body, seen.headers)
    with pytest.raises(WebhookVerificationError):
        SvixWebhook(new_secret()).verify(seen.body, seen.headers)
    with pytest.raises(WebhookVerificationError):
        SvixWebhook(SECRET).verify(seen.body + b" ", seen.headers)
    with pytest.raises(WebhookVerificationError):
        SvixWebhook(SECRET).verify(seen.body, {**seen.headers, "webhook-id": "evt-2"})


def test_the_webhook_id_is_the_same_on_every_attempt(receiver: Receiver, client: httpx2.Client) -> None:
    receiver.script.extend([(500, {}, 0.0), (200, {}, 0.0)])
    first, second = deliver(client, receiver.url()), deliver(client, receiver.url())
    assert (first.delivered, first.retryable, second.delivered) == (False, True, True)
    assert [s.headers["webhook-id"] for s in receiver.seen] == ["evt-1", "evt-1"]
    for seen in receiver.seen:
        SvixWebhook(SECRET).verify(seen.body, seen.headers)


def test_webhook_ids_that_could_forge_the_signed_string_are_refused() -> None:
    for bad in ("", "evt.1", "evt 1", "evt\r\nx-evil: 1"):
        with pytest.raises(ValueError, match="webhook id"):
            webhook_headers(bad, PAYLOAD, [SECRET], timestamp=1)
    assert set(webhook_headers("e", PAYLOAD, [SECRET], timestamp=1)) == {
        "content-type",
        "user-agent",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }


@pytest.mark.parametrize("bad", ["", "whsec_", "whsec_c2hvcnQ=", "sk_" + "A" * 40, "whsec_not*base64*at*all*here**"])
def test_bad_secrets_are_refused_without_being_echoed(bad: str) -> None:
    with pytest.raises(InvalidWebhookSecret) as info:
        WebhookSecret(bad)
    assert str(info.value) == "a webhook secret must be 'whsec_' followed by base64 of 24 to 64 bytes"
    assert info.value.code == "invalid_webhook_secret"


def test_an_invalid_secret_fails_the_attempt_without_contacting_the_target(
    receiver: Receiver, client: httpx2.Client
) -> None:
    result = deliver(client, receiver.url(), secrets=["whsec_c2hvcnQ="])
    assert not result.delivered and not result.retryable and "c2hvcnQ" not in str(result.error)
    assert result.error is not None and result.error.startswith("invalid webhook secret")
    assert deliver(client, receiver.url(), secrets=[]).error == "invalid webhook secret: no webhook secret to sign with"
    assert receiver.seen == []


def test_secrets_appear_in_no_repr_or_str() -> None:
    secret = WebhookSecret(SECRET)
    config = WebhookConfig.from_settings(Settings(webhook_secrets=f"{SECRET},{OLD_SECRET}"))
    key = SECRET.removeprefix("whsec_")
    for text in (repr(secret), str(secret), repr(config), str(config), repr(Settings(webhook_secrets=SECRET))):
        assert key not in text and OLD_SECRET.removeprefix("whsec_") not in text
    assert len(config.secrets) == 2


# --- classification against the real receiver -----------------------------------------


def test_a_500_is_a_retryable_failure(receiver: Receiver, client: httpx2.Client) -> None:
    receiver.script.append((500, {}, 0.0))
    result = deliver(client, receiver.url())
    assert (result.delivered, result.status_code, result.error, result.retryable) == (False, 500, "HTTP 500", True)
    assert not result.disable and not result.throttle and result.retry_after_s is None


def test_a_429_with_retry_after_seconds_is_throttled_and_parsed(receiver: Receiver, client: httpx2.Client) -> None:
    receiver.script.append((429, {"Retry-After": "7"}, 0.0))
    result = deliver(client, receiver.url())
    assert (result.status_code, result.retry_after_s, result.throttle, result.retryable) == (429, 7.0, True, True)


def test_a_503_with_an_http_date_retry_after_is_parsed(receiver: Receiver, client: httpx2.Client) -> None:
    receiver.script.append((503, {"Retry-After": formatdate(time.time() + 120, usegmt=True)}, 0.0))
    result = deliver(client, receiver.url())
    assert result.status_code == 503 and result.retryable and not result.throttle
    assert result.retry_after_s is not None and 100 <= result.retry_after_s <= 121


def test_a_410_disables_the_target_and_is_not_retried(receiver: Receiver, client: httpx2.Client) -> None:
    receiver.script.append((410, {}, 0.0))
    result = deliver(client, receiver.url())
    assert (result.delivered, result.disable, result.retryable, result.status_code) == (False, True, False, 410)


def test_a_302_is_a_failed_attempt_and_is_not_followed(receiver: Receiver, client: httpx2.Client) -> None:
    receiver.script.append((302, {"Location": receiver.url("/elsewhere")}, 0.0))
    result = deliver(client, receiver.url())
    assert (result.delivered, result.status_code, result.retryable) == (False, 302, True)
    assert result.error == "HTTP 302: redirects are not followed"
    receiver.script.append((307, {"Location": receiver.url("/elsewhere")}, 0.0))
    with httpx2.Client(follow_redirects=True, trust_env=False) as following:  # even a client that would
        assert deliver(following, receiver.url()).status_code == 307
    assert [s.path for s in receiver.seen] == ["/hook", "/hook"]


def test_a_slow_receiver_times_out_within_the_attempt_timeout(receiver: Receiver, client: httpx2.Client) -> None:
    receiver.script.append((200, {}, 3.0))
    started = time.monotonic()
    result = deliver(client, receiver.url(), timeout_s=0.3)
    assert (result.delivered, result.error, result.retryable, result.status_code) == (False, "timeout", True, None)
    assert time.monotonic() - started < 2


def test_a_closed_port_is_connection_refused(client: httpx2.Client) -> None:
    result = deliver(client, f"http://127.0.0.1:{free_port()}/hook")
    assert (result.delivered, result.error, result.retryable, result.address) == (
        False,
        "connection refused",
        True,
        "127.0.0.1",
    )


def test_blocked_and_invalid_targets_are_never_contacted(receiver: Receiver, client: httpx2.Client) -> None:
    for url in (receiver.url(), receiver.url(host="localhost"), receiver.url(host="[::ffff:127.0.0.1]")):
        result = deliver(client, url, guard=EgressGuard())
        assert not result.delivered and not result.retryable and result.address is None
        assert result.error is not None and result.error.startswith("blocked: ") and "is loopback" in result.error
    result = deliver(client, f"ftp://127.0.0.1:{receiver.port}/hook")
    assert result.error == "invalid url: scheme must be http or https" and not result.retryable
    assert receiver.seen == []


def test_an_unresolvable_name_is_retryable(client: httpx2.Client) -> None:
    def fail(host: str, port: int) -> Sequence[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    result = deliver(client, "http://nowhere.invalid/hook", guard=EgressGuard(resolver=fail))
    assert (result.error, result.retryable) == ("dns: cannot resolve nowhere.invalid", True)


def test_dns_rebinding_cannot_move_a_checked_attempt(receiver: Receiver, client: httpx2.Client) -> None:
    answers = iter([["127.0.0.1"], ["10.0.0.1"]])
    calls: list[str] = []

    def rebinding(host: str, port: int) -> Sequence[str]:
        calls.append(host)
        return next(answers)

    guard = EgressGuard(allow_networks=parse_networks("127.0.0.1/32"), resolver=rebinding)
    url = receiver.url(host="rebind.test")
    first = deliver(client, url, guard=guard)
    assert first.delivered and first.address == "127.0.0.1" and calls == ["rebind.test"]
    assert receiver.seen[0].headers["host"] == f"rebind.test:{receiver.port}"
    second = deliver(client, url, guard=guard)
    assert second.error == "blocked: 10.0.0.1 is private (from rebind.test)" and not second.retryable
    assert len(receiver.seen) == 1


def test_the_next_checked_address_is_tried_when_one_refuses(receiver: Receiver, client: httpx2.Client) -> None:
    guard = EgressGuard(allow_networks=LOOPBACK.allow_networks, resolver=lambda host, port: ["::1", "127.0.0.1"])
    result = deliver(client, receiver.url(host="two.test"), guard=guard)
    assert result.delivered and result.address == "127.0.0.1"


def test_https_is_verified_against_the_host_name_not_the_pinned_ip() -> None:
    ca = trustme.CA()
    trust = ssl.create_default_context()
    ca.configure_trust(trust)
    guard = EgressGuard(allow_networks=parse_networks("127.0.0.1/32"), resolver=lambda host, port: ["127.0.0.1"])
    for cert_name, expect_delivered in (("hooks.example.test", True), ("other.example.test", False)):
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(cert_name).configure_cert(tls)
        server = Receiver(tls=tls)
        try:
            with new_client(timeout_s=5, verify=trust) as client:
                url = server.url(host="hooks.example.test", scheme="https")
                result = deliver(client, url, guard=guard)
        finally:
            server.close()
        assert result.delivered is expect_delivered
        if expect_delivered:
            assert server.seen[0].headers["host"] == f"hooks.example.test:{server.port}"
            SvixWebhook(SECRET).verify(server.seen[0].body, server.seen[0].headers)
        else:
            assert result.error is not None and result.error.startswith("tls: ") and result.retryable
            assert server.seen == []


# --- retry schedule ----------------------------------------------------------------------


def test_the_default_schedule_is_the_standard_webhooks_one() -> None:
    assert SCHEDULE == (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
    assert WebhookConfig.from_settings(Settings()).schedule == SCHEDULE


def test_next_delay_follows_the_schedule_within_the_jitter_until_exhausted() -> None:
    rng = random.Random(1)
    for attempts_made, base in enumerate(SCHEDULE):
        delay = next_delay(attempts_made, SCHEDULE, None, rng)
        assert delay is not None and base * (1 - JITTER) <= delay <= base * (1 + JITTER)
    assert next_delay(0, SCHEDULE, None, rng) == 0
    assert next_delay(len(SCHEDULE), SCHEDULE, None, rng) is None
    assert next_delay(len(SCHEDULE), SCHEDULE, 5.0, rng) is None
    with pytest.raises(ValueError):
        next_delay(-1, SCHEDULE)


def test_jitter_is_deterministic_given_the_rng_and_varies_between_draws() -> None:
    def draws(seed: int) -> list[float | None]:
        rng = random.Random(seed)
        return [next_delay(3, SCHEDULE, None, rng) for _ in range(20)]

    assert draws(7) == draws(7)
    assert draws(7) != draws(8)
    assert len(set(draws(7))) > 10


def test_retry_after_is_waited_out_but_capped() -> None:
    rng = random.Random(3)
    assert next_delay(1, SCHEDULE, 120.0, rng) == 120.0  # longer than the scheduled 5 s
    delay = next_delay(2, SCHEDULE, 1.0, rng)  # shorter than the scheduled 300 s
    assert delay is not None and delay >= 300 * (1 - JITTER)
    assert next_delay(1, SCHEDULE, 10.0**9, rng) == MAX_RETRY_AFTER_S


def test_a_compressed_schedule_for_tests_parses_and_bad_ones_do_not() -> None:
    assert parse_schedule("0, 0.05,0.2") == (0.0, 0.05, 0.2)
    for bad in ("", ",", "a,b", "0,-1", "0,nan"):
        with pytest.raises(ValueError):
            parse_schedule(bad)


def test_retry_after_parsing() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("120", now=now) == 120.0
    assert parse_retry_after(" 0 ", now=now) == 0.0
    assert parse_retry_after(formatdate(now + 90, usegmt=True), now=now) == 90.0
    assert parse_retry_after(formatdate(now - 90, usegmt=True), now=now) == 0.0
    for bad in (None, "", "soon", "-5", "1.5e3"):
        assert parse_retry_after(bad, now=now) is None


# --- payload -----------------------------------------------------------------------------


def _output(i: int, key_len: int = 40) -> dict[str, Any]:
    return {
        "step_index": 0,
        "operation": "thumbnail",
        "name": f"r{i}",
        "bucket": "darkroom",
        "key": "derived/img-1/0-thumbnail-abc/" + "k" * key_len + f"{i}.webp",
        "size": 1000 + i,
        "width": 256,
        "height": 171,
        "content_type": "image/webp",
        "sha256": "ab" * 32,
    }


def _completed(outputs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "event_id": "0b4c5a8e-2f6d-5c1a-9e8f-0123456789ab",
        "upload_event_id": "up-1",
        "image_id": "img-1",
        "bucket": "darkroom",
        "source_key": "uploads/img-1/photo.jpg",
        "pipeline": [{"operation": "thumbnail", "params": {"sizes": "256"}}],
        "outputs": outputs,
        "timings": [{"step_index": 0, "operation": "thumbnail"}],
        "callback_url": "https://hooks.example.com/in?token=s3cr3t",
        "tenant": "acme",
        "submitted_at": datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
        "completed_at": datetime(2026, 1, 2, 3, 4, 6, 789000, tzinfo=UTC),
    }


def test_the_completed_payload_is_thin_deterministic_json() -> None:
    event = _completed([_output(0), _output(1)])
    body = payload_for(event, "completed")
    assert body == payload_for(dict(event), "completed")
    doc = json.loads(body)
    assert body == json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    assert doc["type"] == "image.completed" and doc["timestamp"] == "2026-01-02T03:04:06.789Z"
    data = doc["data"]
    assert {k: data[k] for k in ("event_id", "image_id", "tenant", "status", "outputs_truncated")} == {
        "event_id": event["event_id"],
        "image_id": "img-1",
        "tenant": "acme",
        "status": "completed",
        "outputs_truncated": False,
    }
    assert data["submitted_at"] == "2026-01-02T03:04:05.678Z" and data["outputs"] == [_output(0), _output(1)]
    assert b"s3cr3t" not in body and "timings" not in data and "pipeline" not in data


def test_the_failed_payload_carries_the_error() -> None:
    event = {
        **_completed([]),
        "error_code": "not_an_image",
        "message": "x" * 5000,
        "retryable": False,
        "failed_step": "thumbnail",
        "step_index": 0,
        "failed_at": datetime(2026, 1, 2, 3, 4, 7, tzinfo=UTC),
    }
    del event["completed_at"]
    doc = json.loads(payload_for(event, "failed"))
    assert doc["type"] == "image.failed" and doc["timestamp"] == "2026-01-02T03:04:07.000Z"
    data = doc["data"]
    assert (data["status"], data["error_code"], data["failed_step"], data["retryable"]) == (
        "failed",
        "not_an_image",
        "thumbnail",
        False,
    )
    assert len(data["message"]) == 1000 and data["outputs"] == []
    with pytest.raises(ValueError):
        payload_for(event, "done")  # type: ignore[arg-type]


def test_a_payload_from_an_avro_decoded_event() -> None:
    serde = Serde("ImageCompleted")
    event = _completed([_output(0)])
    event["timings"] = []
    decoded = serde.decode(serde.encode(event, "images.completed"), "images.completed")
    assert payload_for(decoded, "completed") == payload_for(event, "completed")


def test_payloads_stay_under_20_kb_by_truncating_outputs() -> None:
    body = payload_for(_completed([_output(i, key_len=200) for i in range(500)]), "completed")
    data = json.loads(body)["data"]
    assert len(body) <= MAX_PAYLOAD_BYTES
    assert data["outputs_truncated"] is True and data["outputs_total"] == 500
    assert 0 < len(data["outputs"]) < 500 and data["outputs"] == [_output(i, 200) for i in range(len(data["outputs"]))]
    bigger = payload_for(_completed([_output(i, key_len=200) for i in range(len(data["outputs"]) + 1)]), "completed")
    assert len(bigger) > MAX_PAYLOAD_BYTES or json.loads(bigger)["data"]["outputs_truncated"]


# --- per-target concurrency ----------------------------------------------------------------


def test_the_limiter_bounds_each_target_separately() -> None:
    limiter = TargetLimiter(2)
    assert [limiter.try_acquire("a:443") for _ in range(3)] == [True, True, False]
    assert limiter.try_acquire("b:443") and limiter.in_flight("a:443") == 2
    limiter.release("a:443")
    assert limiter.try_acquire("a:443")
    for _ in range(2):
        limiter.release("a:443")
    limiter.release("b:443")
    with pytest.raises(RuntimeError):
        limiter.release("a:443")
    with pytest.raises(ValueError):
        TargetLimiter(0)
    assert target_key("https://Hooks.Example.com/x") == "hooks.example.com:443"
    assert target_key("http://h.test:8080/") == "h.test:8080"


def test_a_throttled_target_takes_no_attempt_until_its_retry_after_or_cool_down_ends() -> None:
    now = [1000.0]
    limiter = TargetLimiter(2, clock=lambda: now[0])
    assert limiter.throttle("a:443", 2.0) == 2.0
    assert not limiter.try_acquire("a:443") and limiter.try_acquire("b:443")  # only that target waits
    assert limiter.closed() == {"a:443"}
    limiter.throttle("a:443", 0.5)  # a shorter answer does not cut the pause short
    now[0] += 1.99
    assert not limiter.try_acquire("a:443")
    now[0] += 0.01
    assert limiter.try_acquire("a:443") and limiter.closed() == set()
    assert limiter.try_acquire("a:443") and limiter.closed() == {"a:443"}  # full now, not throttled

    assert limiter.throttle("c:80", None) == THROTTLE_COOLDOWN_S  # no Retry-After: the cool-down
    now[0] += THROTTLE_COOLDOWN_S - 0.01
    assert not limiter.try_acquire("c:80")
    now[0] += 0.01
    assert limiter.try_acquire("c:80")
    assert limiter.throttle("d:80", 10 * MAX_RETRY_AFTER_S) == MAX_RETRY_AFTER_S  # capped like Retry-After
    assert limiter.throttle("e:80", -3.0) == 0.0 and limiter.try_acquire("e:80")


def test_a_slow_target_holds_only_its_own_slots(client: httpx2.Client) -> None:
    slow, fast = Receiver(), Receiver()
    try:
        slow.script.append((200, {}, 1.2))
        limiter = TargetLimiter(1)
        slow_url, fast_url = slow.url(host="localhost"), fast.url()
        guard = EgressGuard(allow_networks=LOOPBACK.allow_networks, resolver=lambda host, port: ["127.0.0.1"])
        with ThreadPoolExecutor(2) as pool:
            assert limiter.try_acquire(target_key(slow_url))
            pending = pool.submit(deliver, client, slow_url, guard=guard)
            while not slow.seen:
                time.sleep(0.01)
            assert not limiter.try_acquire(target_key(slow_url))  # a second one for it waits
            assert limiter.try_acquire(target_key(fast_url))
            started = time.monotonic()
            assert deliver(client, fast_url, guard=guard).delivered
            assert time.monotonic() - started < 1.0 and not pending.done()
            assert pending.result().delivered
    finally:
        slow.close()
        fast.close()


def test_the_limiter_is_safe_across_threads() -> None:
    limiter, peak, lock = TargetLimiter(3), [0], threading.Lock()

    def work() -> None:
        for _ in range(300):
            if limiter.try_acquire("h:80"):
                with lock:
                    peak[0] = max(peak[0], limiter.in_flight("h:80"))
                limiter.release("h:80")

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 1 <= peak[0] <= 3 and limiter.in_flight("h:80") == 0


# --- configuration -------------------------------------------------------------------------


def test_webhook_settings_are_read_from_the_environment() -> None:
    settings = load_settings(
        {
            "DARKROOM_WEBHOOK_SCHEDULE": "0,0.1,0.2",
            "DARKROOM_WEBHOOK_TIMEOUT_S": "2.5",
            "DARKROOM_WEBHOOK_MAX_IN_FLIGHT_PER_HOST": "2",
            "DARKROOM_WEBHOOK_ALLOW_NETWORKS": "127.0.0.1/32,::1/128",
            "DARKROOM_WEBHOOK_SECRETS": f"{SECRET},{OLD_SECRET}",
        }
    )
    config = WebhookConfig.from_settings(settings)
    assert config.schedule == (0.0, 0.1, 0.2) and config.timeout_s == 2.5
    assert config.guard().allow_networks == LOOPBACK.allow_networks
    assert config.limiter().max_in_flight_per_host == 2 and len(config.secrets) == 2


def test_every_bad_webhook_setting_is_reported_at_once_without_the_secret() -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings(
            webhook_schedule="soon",
            webhook_allow_networks="intranet",
            webhook_secrets="whsec_dG9vc2hvcnQ=",
            webhook_timeout_s=0,
            webhook_max_in_flight_per_host=0,
        )
    message = str(info.value)
    for name in ("SCHEDULE", "ALLOW_NETWORKS", "SECRETS", "TIMEOUT_S", "MAX_IN_FLIGHT_PER_HOST"):
        assert f"DARKROOM_WEBHOOK_{name}" in message
    assert "dG9vc2hvcnQ" not in message
