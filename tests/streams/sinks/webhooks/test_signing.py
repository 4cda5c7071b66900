"""Standard Webhooks signing, verified independently (svix 1.83.0: see ``loopback``)."""

from __future__ import annotations

import inspect
import json
import time

import httpx2
import pytest
import svix.webhooks
from svix.webhooks import Webhook as SvixWebhook
from svix.webhooks import WebhookVerificationError

from processors.errors import ConfigurationError
from streams.config import Settings, load_settings
from streams.errors import InvalidWebhookSecret
from streams.sinks.webhooks.attempt import AttemptResult
from streams.sinks.webhooks.signing import WebhookSecret, new_secret, secrets_from, webhook_headers
from tests.streams.sinks.webhooks.loopback import OLD_SECRET, PAYLOAD, SECRET, Receiver, deliver


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


def test_secrets_appear_in_no_repr_or_str() -> None:
    secret = WebhookSecret(SECRET)
    secrets = secrets_from(Settings(webhook_secrets=f"{SECRET},{OLD_SECRET}"))
    key = SECRET.removeprefix("whsec_")
    for text in (repr(secret), str(secret), repr(secrets), str(secrets), repr(Settings(webhook_secrets=SECRET))):
        assert key not in text and OLD_SECRET.removeprefix("whsec_") not in text
    assert len(secrets) == 2


def test_the_secrets_are_read_from_the_environment_current_first() -> None:
    secrets = secrets_from(load_settings({"DARKROOM_WEBHOOK_SECRETS": f"{SECRET},{OLD_SECRET}"}))
    assert len(secrets) == 2
    assert secrets[0].sign("evt-1", 1, PAYLOAD) == WebhookSecret(SECRET).sign("evt-1", 1, PAYLOAD)
    assert secrets[1].sign("evt-1", 1, PAYLOAD) == WebhookSecret(OLD_SECRET).sign("evt-1", 1, PAYLOAD)


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
