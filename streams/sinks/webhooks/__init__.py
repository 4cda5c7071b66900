"""Webhook delivery logic: the payload, Standard Webhooks signing, one attempt, the retry
schedule and the per-target limiter.

Pure functions plus one I/O seam, the ``httpx2.Client`` handed to ``send`` (its transport
is what tests may replace); no database and no Kafka. The dispatcher
(``streams.sinks.dispatcher``) owns durability: it stores each delivery in the outbox
(``streams.sinks.outbox``), calls ``send`` for one attempt, and asks ``next_delay`` when to
try again. Keeping the attempt free of state is what lets a SIGKILLed dispatcher resume.

- ``payload``: the thin, deterministic JSON body of an ``ImageCompleted`` /
  ``ImageFailed`` event, under ``MAX_PAYLOAD_BYTES`` (``payload_for``).
- ``signing`` (``standardwebhooks``): ``webhook-id`` is the event id, the same on every
  retry and replay, so receivers deduplicate on it; ``webhook-timestamp`` is the attempt's
  time; ``webhook-signature`` holds one ``v1,…`` entry per active secret, space-separated,
  so secrets rotate without downtime (``WebhookSecret``, ``secrets_from``,
  ``webhook_headers``).
- ``attempt``: one signed POST, classified per the Standard Webhooks spec: 2xx delivered;
  410 Gone disables the target; redirects are never followed, a 3xx is a failed attempt;
  every other status, timeouts and connection errors are retryable; 429/502/504 also ask
  to throttle. Every attempt goes through ``streams.runtime.egress.EgressGuard.pin``
  (``send``, ``new_client``, ``AttemptResult``, ``parse_retry_after``).
- ``schedule``: the delay before the next attempt, jittered by ±``JITTER``; a
  ``Retry-After`` answer is honoured, capped at ``MAX_RETRY_AFTER_S`` (``next_delay``).
- ``limiter``: at most so many attempts in flight per ``host:port`` (``target_key``), and
  none to a throttled one during its ``Retry-After`` or ``THROTTLE_COOLDOWN_S``
  (``TargetLimiter``).

Secrets are held by ``WebhookSecret``, whose repr hides them; nothing here logs.
"""

from __future__ import annotations

from streams.sinks.webhooks.attempt import AttemptResult, new_client, parse_retry_after, send
from streams.sinks.webhooks.limiter import THROTTLE_COOLDOWN_S, TargetLimiter, target_key
from streams.sinks.webhooks.payload import EVENT_TYPES, MAX_MESSAGE_CHARS, MAX_PAYLOAD_BYTES, payload_for
from streams.sinks.webhooks.schedule import JITTER, MAX_RETRY_AFTER_S, next_delay
from streams.sinks.webhooks.signing import (
    USER_AGENT,
    WebhookSecret,
    new_secret,
    secrets_from,
    signature_header,
    webhook_headers,
)

__all__ = [
    "EVENT_TYPES",
    "JITTER",
    "MAX_MESSAGE_CHARS",
    "MAX_PAYLOAD_BYTES",
    "MAX_RETRY_AFTER_S",
    "THROTTLE_COOLDOWN_S",
    "USER_AGENT",
    "AttemptResult",
    "TargetLimiter",
    "WebhookSecret",
    "new_client",
    "new_secret",
    "next_delay",
    "parse_retry_after",
    "payload_for",
    "secrets_from",
    "send",
    "signature_header",
    "target_key",
    "webhook_headers",
]
