"""One delivery attempt: a signed POST through the egress guard, classified per Standard Webhooks.

The one I/O seam is the ``httpx2.Client`` handed to ``send`` (its transport is what tests
may replace); no database and no Kafka. Keeping the attempt free of state is what lets a
SIGKILLed dispatcher resume.

Classification: 2xx delivered; 410 Gone disables the target; redirects are never
followed, a 3xx is a failed attempt; every other status, timeouts and connection errors
are retryable; 429/502/504 also ask to throttle. A ``Retry-After`` is parsed here and
honoured by the dispatcher (``schedule.next_delay``, ``limiter.TargetLimiter.throttle``).
Every attempt goes through ``streams.runtime.egress.EgressGuard.pin``. Nothing here logs.
"""

from __future__ import annotations

import email.utils
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import httpx2

from streams.errors import InvalidWebhookSecret, InvalidWebhookUrl, WebhookTargetBlocked, WebhookTargetUnresolvable
from streams.runtime.egress import EgressGuard
from streams.sinks.webhooks.signing import WebhookSecret, webhook_headers

_THROTTLE_STATUSES = frozenset({429, 502, 504})


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
    if value.isascii() and value.isdigit():  # str.isdigit alone admits "²", which float() refuses
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)
