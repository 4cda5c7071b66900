"""One attempt against a real HTTP(S) receiver on loopback: what each answer or failure means."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Sequence
from email.utils import formatdate

import httpx2
import trustme
from svix.webhooks import Webhook as SvixWebhook

from streams.config import parse_networks
from streams.runtime.egress import EgressGuard
from streams.sinks.webhooks.attempt import new_client, parse_retry_after
from tests.streams.sinks.webhooks.loopback import LOOPBACK, SECRET, Receiver, deliver, free_port


def test_an_invalid_secret_fails_the_attempt_without_contacting_the_target(
    receiver: Receiver, client: httpx2.Client
) -> None:
    result = deliver(client, receiver.url(), secrets=["whsec_c2hvcnQ="])
    assert not result.delivered and not result.retryable and "c2hvcnQ" not in str(result.error)
    assert result.error is not None and result.error.startswith("invalid webhook secret")
    assert deliver(client, receiver.url(), secrets=[]).error == "invalid webhook secret: no webhook secret to sign with"
    assert receiver.seen == []


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


def test_a_retry_after_that_is_not_ascii_digits_is_ignored_and_the_attempt_is_classified(
    receiver: Receiver, client: httpx2.Client
) -> None:
    receiver.script.append((429, {"Retry-After": "\u00b2"}, 0.0))  # "²": str.isdigit says yes, float() says no
    result = deliver(client, receiver.url())
    assert (result.status_code, result.retry_after_s, result.throttle, result.retryable) == (429, None, True, True)


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


# --- Retry-After ------------------------------------------------------------------------


def test_retry_after_parsing() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("120", now=now) == 120.0
    assert parse_retry_after(" 0 ", now=now) == 0.0
    assert parse_retry_after(formatdate(now + 90, usegmt=True), now=now) == 90.0
    assert parse_retry_after(formatdate(now - 90, usegmt=True), now=now) == 0.0
    for bad in (None, "", "soon", "-5", "1.5e3", "\u00b2", "\u0661\u0662"):  # "²", Arabic-Indic "12": not DIGITs
        assert parse_retry_after(bad, now=now) is None
