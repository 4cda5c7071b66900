"""Standard Webhooks signing: ``whsec_`` secrets, the ``webhook-signature`` value, the headers.

``webhook-id`` is the event id, the same on every retry and replay, so receivers
deduplicate on it; ``webhook-timestamp`` is the attempt's time; ``webhook-signature``
holds one ``v1,…`` entry per active secret, space-separated, so secrets rotate without
downtime. Secrets are held by ``WebhookSecret``, whose repr hides them.
"""

from __future__ import annotations

import base64
import secrets as _secrets
from collections.abc import Sequence
from datetime import UTC, datetime

from standardwebhooks import Webhook

from streams.config import Settings, webhook_secret_key
from streams.errors import InvalidWebhookSecret

USER_AGENT = "darkroom-webhooks/1"

_SECRET_PREFIX = "whsec_"


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
