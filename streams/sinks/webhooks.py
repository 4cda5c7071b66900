"""Webhook delivery logic: payload, Standard Webhooks signing, one attempt, retry schedule.

Pure functions plus one I/O seam, the ``httpx2.Client`` handed to ``send`` (its transport
is what tests may replace); no database and no Kafka. The dispatcher owns durability: it
stores each delivery, calls ``send`` for one attempt, and asks ``next_delay`` when to try
again. Keeping the attempt free of state is what lets a SIGKILLed dispatcher resume.

- **Signing** (``standardwebhooks``): ``webhook-id`` is the event id, the same on every
  retry and replay, so receivers deduplicate on it; ``webhook-timestamp`` is the attempt's
  time; ``webhook-signature`` holds one ``v1,…`` entry per active secret, space-separated,
  so secrets rotate without downtime.
- **Classification** (the Standard Webhooks spec): 2xx delivered; 410 Gone disables the
  target; redirects are never followed, a 3xx is a failed attempt; every other status,
  timeouts and connection errors are retryable; 429/502/504 also ask to throttle; a
  ``Retry-After`` answer is honoured (capped at ``MAX_RETRY_AFTER_S``), by the retry's
  delay and, for a throttle, by ``TargetLimiter.throttle`` for the whole target.
- **Egress**: every attempt goes through ``streams.runtime.egress.EgressGuard.pin``.

Secrets are held by ``WebhookSecret``, whose repr hides them; nothing here logs.
"""

from __future__ import annotations

import base64
import email.utils
import json
import random
import secrets as _secrets
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import httpx2
from standardwebhooks import Webhook

from processors.errors import (
    InvalidWebhookSecret,
    InvalidWebhookUrl,
    WebhookTargetBlocked,
    WebhookTargetUnresolvable,
)
from streams.config import IPNetwork, Settings, webhook_secret_key
from streams.runtime.egress import EgressGuard, parse_target

USER_AGENT = "darkroom-webhooks/1"
JITTER = 0.2
"""Each scheduled delay is multiplied by a factor drawn from [1 - JITTER, 1 + JITTER]."""
MAX_RETRY_AFTER_S = 86_400.0
"""A receiver's ``Retry-After`` is honoured up to one day."""
THROTTLE_COOLDOWN_S = 5.0
"""How long a target that answered 429/502/504 without ``Retry-After`` gets no new attempt."""
MAX_PAYLOAD_BYTES = 20_000
"""Standard Webhooks recommends payloads under ~20 KB; outputs are truncated to fit."""
MAX_MESSAGE_CHARS = 1_000
EVENT_TYPES: dict[str, str] = {"completed": "image.completed", "failed": "image.failed"}

_SECRET_PREFIX = "whsec_"
_THROTTLE_STATUSES = frozenset({429, 502, 504})
_OUTPUT_FIELDS = (
    "step_index",
    "operation",
    "name",
    "bucket",
    "key",
    "size",
    "width",
    "height",
    "content_type",
    "sha256",
)


# --- secrets and signing -------------------------------------------------------------


class WebhookSecret:
    """A ``whsec_…`` signing secret (base64 of 24–64 random bytes); never shown by repr/str."""

    __slots__ = ("_signer",)

    def __init__(self, secret: str) -> None:
        try:
            key = webhook_secret_key(secret)
        except ValueError as exc:
            raise InvalidWebhookSecret(str(exc)) from None
        self._signer = Webhook(key)

    def sign(self, webhook_id: str, timestamp: int, payload: bytes) -> str:
        """``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``."""
        # standardwebhooks reads a naive-or-UTC datetime as UTC and signs the str body.
        at = datetime.fromtimestamp(timestamp, tz=UTC)
        return self._signer.sign(webhook_id, at, payload.decode("utf-8"))

    def __repr__(self) -> str:
        return "WebhookSecret('whsec_***')"

    __str__ = __repr__


def new_secret() -> str:
    """A fresh ``whsec_`` secret (32 random bytes), e.g. for a new subscription."""
    return _SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(32)).decode("ascii")


def secrets_from(settings: Settings) -> tuple[WebhookSecret, ...]:
    """``DARKROOM_WEBHOOK_SECRETS``, current first (checked when the settings were read)."""
    return tuple(WebhookSecret(s.get_secret_value()) for s in settings.webhook_secrets)


def _as_secrets(secrets: Sequence[WebhookSecret | str]) -> tuple[WebhookSecret, ...]:
    return tuple(s if isinstance(s, WebhookSecret) else WebhookSecret(s) for s in secrets)


def signature_header(webhook_id: str, timestamp: int, payload: bytes, secrets: Sequence[WebhookSecret | str]) -> str:
    """The ``webhook-signature`` value: one ``v1,…`` entry per secret, space-separated."""
    signers = _as_secrets(secrets)
    if not signers:
        raise InvalidWebhookSecret("no webhook secret to sign with")
    return " ".join(s.sign(webhook_id, timestamp, payload) for s in signers)


def webhook_headers(
    webhook_id: str, payload: bytes, secrets: Sequence[WebhookSecret | str], *, timestamp: int
) -> dict[str, str]:
    """Every header of a delivery attempt; ``timestamp`` is the attempt's, in seconds."""
    if not webhook_id or any(c in webhook_id for c in ". \t\r\n"):
        # The spec signs "id.timestamp.body": an id with a dot could forge the split.
        raise ValueError("webhook id must be non-empty, without dots or whitespace")
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(webhook_id, timestamp, payload, secrets),
    }


# --- one attempt ---------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class AttemptResult:
    """What one delivery attempt did; the dispatcher stores it and decides what is next."""

    delivered: bool
    """The receiver answered 2xx."""
    status_code: int | None = None
    """The receiver's status, None when no response came (blocked, timeout, refused…)."""
    retry_after_s: float | None = None
    """The receiver's ``Retry-After``, in seconds from now (uncapped; ``next_delay`` caps)."""
    disable: bool = False
    """410 Gone: disable the subscription / stop sending to this target."""
    throttle: bool = False
    """429, 502 or 504: the receiver is overloaded; slow down for this target."""
    error: str | None = None
    """Short, secret-free text: ``"timeout"``, ``"connection refused"``, ``"HTTP 500"``…"""
    retryable: bool = False
    """Worth another attempt (False for delivered, blocked or invalid targets and 410)."""
    address: str | None = None
    """The IP address dialled, after the egress check."""
    duration_s: float = 0.0


def new_client(*, timeout_s: float, verify: ssl.SSLContext | bool = True) -> httpx2.Client:
    """The HTTP client for ``send``: no redirects, no proxies from the environment, no keep-alive.

    No proxies, because a proxy would resolve the name again and undo the egress pinning.
    No keep-alive, because a pooled TLS connection is keyed by IP and port only: a request
    for another host on the same address could reuse a connection whose certificate was
    verified for a different name.
    """
    return httpx2.Client(
        follow_redirects=False,
        trust_env=False,
        verify=verify,
        timeout=timeout_s,
        limits=httpx2.Limits(max_connections=None, max_keepalive_connections=0),
    )


def send(
    target_url: str,
    webhook_id: str,
    payload: bytes,
    secrets: Sequence[WebhookSecret | str],
    *,
    timeout_s: float,
    guard: EgressGuard,
    client: httpx2.Client,
) -> AttemptResult:
    """One signed POST of ``payload`` to ``target_url``; never raises for the target's faults.

    The host is resolved once and only checked addresses are dialled, in the resolver's
    order, moving to the next one only when a connection could not be opened (nothing
    was sent). Each connect, write and read wait gets at most what is left of
    ``timeout_s``. ``client`` should come from ``new_client``: a client that uses a proxy
    would resolve the name again behind the egress check.
    """
    started = time.monotonic()
    deadline = started + timeout_s

    def result(**kwargs: Any) -> AttemptResult:
        return AttemptResult(duration_s=round(time.monotonic() - started, 6), **kwargs)

    try:
        headers = webhook_headers(webhook_id, payload, secrets, timestamp=int(time.time()))
    except InvalidWebhookSecret as exc:
        return result(delivered=False, error=f"invalid webhook secret: {exc}", retryable=False)
    try:
        target = guard.pin(target_url)
    except (InvalidWebhookUrl, WebhookTargetBlocked, WebhookTargetUnresolvable) as exc:
        return result(delivered=False, error=str(exc), retryable=exc.retryable)

    failure: tuple[str, bool] = ("timeout", True)
    address = None
    for ip in target.addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        address = str(ip)
        request = client.build_request(
            "POST",
            target.url_for(ip),
            content=payload,
            headers={**headers, **target.headers()},
            extensions=target.extensions(),
            timeout=remaining,
        )
        try:
            response = client.send(request, stream=True, follow_redirects=False)
        except httpx2.ConnectError as exc:
            failure = _describe(exc)
            continue  # nothing reached the receiver: the next checked address may answer
        except httpx2.TransportError as exc:
            text, retryable = _describe(exc)
            return result(delivered=False, address=address, error=text, retryable=retryable)
        try:  # the body is never read: a slow or huge answer must not hold the attempt
            status, retry_after = response.status_code, response.headers.get("retry-after")
        finally:
            response.close()
        return result(address=address, **_classify(status, parse_retry_after(retry_after, now=time.time())))
    return result(delivered=False, address=address, error=failure[0], retryable=failure[1])


def _classify(status: int, retry_after_s: float | None) -> dict[str, Any]:
    if 200 <= status < 300:
        return {"delivered": True, "status_code": status}
    common = {"delivered": False, "status_code": status, "retry_after_s": retry_after_s}
    if status == 410:
        return {**common, "disable": True, "error": "HTTP 410: gone, target disabled", "retryable": False}
    if 300 <= status < 400:
        return {**common, "error": f"HTTP {status}: redirects are not followed", "retryable": True}
    return {**common, "throttle": status in _THROTTLE_STATUSES, "error": f"HTTP {status}", "retryable": True}


def _describe(exc: httpx2.TransportError) -> tuple[str, bool]:
    """(short text, retryable) for a transport failure; httpx2's messages never pass through."""
    if isinstance(exc, httpx2.TimeoutException):
        return "timeout", True
    cause: BaseException | None = exc
    for _ in range(8):  # the cause chain: httpx2 → httpcore2 → OSError / ssl error
        if cause is None:
            break
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused", True
        if isinstance(cause, ConnectionResetError):
            return "connection reset", True
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"tls: {cause.verify_message or 'certificate verify failed'}", True
        if isinstance(cause, ssl.SSLError):
            return f"tls: {cause.reason or 'handshake failed'}", True
        cause = cause.__cause__ or cause.__context__
    if "refused" in str(exc).lower():
        return "connection refused", True
    if isinstance(exc, httpx2.RemoteProtocolError):
        return "protocol error: the receiver closed the connection or answered badly", True
    if isinstance(exc, httpx2.ConnectError):
        return "connection failed", True
    return f"transport error: {type(exc).__name__}", True


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """``Retry-After`` as seconds from ``now``: delta-seconds or an HTTP-date; None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


# --- retry schedule ------------------------------------------------------------------

_RNG = random.Random()


def next_delay(
    attempts_made: int,
    schedule: Sequence[float],
    retry_after_s: float | None = None,
    rng: random.Random | None = None,
) -> float | None:
    """Seconds to wait before attempt ``attempts_made + 1``; None once the schedule is spent.

    The scheduled delay gets ±``JITTER`` (drawn from ``rng``, so a seeded rng gives the
    same answers), so receivers recovering from an outage are not hit in lockstep. A
    ``Retry-After`` makes the wait at least that long, capped at ``MAX_RETRY_AFTER_S``.
    """
    if attempts_made < 0:
        raise ValueError("attempts_made must be >= 0")
    if attempts_made >= len(schedule):
        return None
    delay = schedule[attempts_made] * (rng or _RNG).uniform(1 - JITTER, 1 + JITTER)
    if retry_after_s is not None:
        delay = max(delay, min(max(retry_after_s, 0.0), MAX_RETRY_AFTER_S))
    return delay


# --- payload -------------------------------------------------------------------------


def _iso(value: Any) -> str | None:
    """ISO-8601 UTC with milliseconds and ``Z``; Avro timestamp-millis decode to datetimes."""
    if value is None:
        return None
    if isinstance(value, int | float):
        value = datetime.fromtimestamp(value / 1000, tz=UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return str(value.astimezone(UTC).isoformat(timespec="milliseconds")).replace("+00:00", "Z")


def _encode(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def payload_for(event: Mapping[str, Any], status: Literal["completed", "failed"]) -> bytes:
    """The thin JSON body for an ``ImageCompleted`` / ``ImageFailed`` event.

    ``{"type": "image.completed"|"image.failed", "timestamp": <event time>, "data": {…}}``:
    ids, tenant, status, the outputs' keys, sizes and digests (never image bytes) and, for
    failures, the error. Deterministic: the same event gives the same bytes, so a replay
    re-sends exactly what was signed before. Under ``MAX_PAYLOAD_BYTES``: outputs beyond
    what fits are left out and ``outputs_truncated`` says so (``outputs_total`` counts all).
    The callback URL is left out: it may carry a token.
    """
    if status not in EVENT_TYPES:
        raise ValueError(f"status must be 'completed' or 'failed', got {status!r}")
    at_field = "completed_at" if status == "completed" else "failed_at"
    data: dict[str, Any] = {
        "event_id": event["event_id"],
        "upload_event_id": event["upload_event_id"],
        "image_id": event["image_id"],
        "tenant": event.get("tenant"),
        "status": status,
        "bucket": event["bucket"],
        "source_key": event["source_key"],
        "submitted_at": _iso(event.get("submitted_at")),
        at_field: _iso(event.get(at_field)),
    }
    if status == "failed":
        data.update(
            error_code=event["error_code"],
            message=str(event["message"])[:MAX_MESSAGE_CHARS],
            retryable=bool(event["retryable"]),
            failed_step=event.get("failed_step"),
            step_index=event.get("step_index"),
        )
    outputs = [{k: o.get(k) for k in _OUTPUT_FIELDS} for o in event.get("outputs") or ()]
    doc = {"type": EVENT_TYPES[status], "timestamp": data[at_field], "data": data}

    def encoded(kept: int) -> bytes:
        data.update(outputs=outputs[:kept], outputs_total=len(outputs), outputs_truncated=kept < len(outputs))
        return _encode(doc)

    body = encoded(len(outputs))
    if len(body) <= MAX_PAYLOAD_BYTES:
        return body
    low, high = 0, len(outputs)  # the most outputs that fit: encoded(low) fits, encoded(high) does not
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if len(encoded(middle)) <= MAX_PAYLOAD_BYTES else (low, middle)
    return encoded(low)


# --- per-target concurrency ----------------------------------------------------------


def target_key(url: str) -> str:
    """What ``TargetLimiter`` counts by: ``host:port`` of the URL, lower-cased."""
    try:
        parsed = parse_target(url)
    except InvalidWebhookUrl:  # never sent anywhere; one key for all, and no URL (or its token) in it
        return "invalid-url"
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return f"{parsed.raw_host.decode('ascii').lower()}:{port}"


class TargetLimiter:
    """At most ``max_in_flight_per_host`` attempts in flight per target, none while it is throttled; thread-safe.

    Keys are ``target_key``. The dispatcher claims only deliveries whose target has a free
    slot (``try_acquire``) and leaves the others in the database untouched (``closed``), so
    one slow, dead or throttled subscriber holds at most its own slots and never the
    others' deliveries. Per process: each dispatcher counts its own attempts.
    """

    def __init__(self, max_in_flight_per_host: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if max_in_flight_per_host < 1:
            raise ValueError("max_in_flight_per_host must be >= 1")
        self.max_in_flight_per_host = max_in_flight_per_host
        self._clock = clock
        self._in_flight: dict[str, int] = {}
        self._throttled_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def try_acquire(self, key: str) -> bool:
        with self._lock:
            count = self._in_flight.get(key, 0)
            if count >= self.max_in_flight_per_host or self._throttled(key):
                return False
            self._in_flight[key] = count + 1
            return True

    def release(self, key: str) -> None:
        with self._lock:
            count = self._in_flight.get(key, 0)
            if count <= 0:
                raise RuntimeError(f"release without acquire for {key}")
            if count == 1:
                del self._in_flight[key]
            else:
                self._in_flight[key] = count - 1

    def in_flight(self, key: str) -> int:
        with self._lock:
            return self._in_flight.get(key, 0)

    def throttle(self, key: str, retry_after_s: float | None) -> float:
        """No new attempt for ``key`` during its ``Retry-After`` (capped), else ``THROTTLE_COOLDOWN_S``.

        Returns the seconds it waits. A shorter request never cuts a longer throttle short.
        """
        seconds = THROTTLE_COOLDOWN_S if retry_after_s is None else min(max(retry_after_s, 0.0), MAX_RETRY_AFTER_S)
        with self._lock:
            until = self._clock() + seconds
            self._throttled_until[key] = max(until, self._throttled_until.get(key, until))
        return seconds

    def closed(self) -> set[str]:
        """The keys ``try_acquire`` refuses now (full or throttled): what not to claim."""
        with self._lock:
            full = {key for key, count in self._in_flight.items() if count >= self.max_in_flight_per_host}
            return full | {key for key in list(self._throttled_until) if self._throttled(key)}

    def _throttled(self, key: str) -> bool:
        """Whether ``key`` is throttled now; forgets a throttle that ended. Call under the lock."""
        until = self._throttled_until.get(key)
        if until is None:
            return False
        if self._clock() < until:
            return True
        del self._throttled_until[key]
        return False


# --- configuration -------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class WebhookConfig:
    """The ``DARKROOM_WEBHOOK_*`` settings as the dispatcher uses them; ``secrets`` sign
    per-upload callbacks."""

    schedule: tuple[float, ...]
    timeout_s: float
    max_in_flight_per_host: int
    allow_networks: tuple[IPNetwork, ...]
    secrets: tuple[WebhookSecret, ...] = field(repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookConfig:
        return cls(
            schedule=settings.webhook_schedule,
            timeout_s=settings.webhook_timeout_s,
            max_in_flight_per_host=settings.webhook_max_in_flight_per_host,
            allow_networks=settings.webhook_allow_networks,
            secrets=secrets_from(settings),
        )

    def guard(self) -> EgressGuard:
        return EgressGuard(allow_networks=self.allow_networks)

    def limiter(self) -> TargetLimiter:
        return TargetLimiter(self.max_in_flight_per_host)
