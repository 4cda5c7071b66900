"""What an upload may name: allowed buckets, valid image ids, admissible callbacks.

Raw events are produced the way any producer could (bypassing ``Client``, which refuses
the same things locally), through a real broker to real ingest and thumbnail workers.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from minio import Minio

from streams.client import Client
from streams.config import Settings, load_settings
from streams.dev.samples import photo_jpeg
from streams.errors import BucketNotAllowed, InvalidImageId, InvalidWebhookUrl, WebhookTargetBlocked
from streams.handlers.steps import worker_specs
from streams.runtime.storage import ObjectStore
from streams.runtime.supervisor import Supervisor
from streams.runtime.topics import FAILED, UPLOADED, step_topic
from streams.wire import events
from streams.wire.events import Serdes
from tests.helpers import decode_all, produce, read_topic

pytestmark = pytest.mark.integration


@pytest.fixture
def other_bucket(settings: Settings, store: ObjectStore) -> str:
    """A bucket the workers' credentials reach, holding a real image, but not allowed."""
    name = f"other-{uuid.uuid4().hex[:8]}"
    store.ensure_bucket(name)
    store.put(name, "uploads/x/photo.jpg", photo_jpeg(320, 240, seed=1), content_type="image/jpeg")
    return name


def _upload(settings: Settings, image_id: str, bucket: str, key: str, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": f"raw-{uuid.uuid4()}",
        "image_id": image_id,
        "bucket": bucket,
        "key": key,
        "pipeline": [{"operation": "thumbnail", "params": {"sizes": "64"}}],
        "submitted_at": datetime.now(UTC),
        **extra,
    }


def _objects(settings: Settings, bucket: str) -> list[str]:
    """Every key in ``bucket``, listed by a client of the test's own."""
    endpoint, access_key, secret_key, secure = settings.s3_credentials()
    client = Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=secure)
    return sorted(str(o.object_name) for o in client.list_objects(bucket, recursive=True))


def test_uploads_naming_another_bucket_or_a_bad_id_fail_at_ingest_before_any_work(
    settings: Settings, store: ObjectStore, other_bucket: str, workers: Supervisor
) -> None:
    serdes = Serdes(settings)
    good_key = "uploads/ok/photo.jpg"
    store.put(settings.bucket, good_key, photo_jpeg(320, 240, seed=2), content_type="image/jpeg")
    raw = {
        "bucket_not_allowed": _upload(settings, "other-bucket", other_bucket, "uploads/x/photo.jpg"),
        "broker_log": _upload(settings, "broker-log", settings.bucket + "-broker-log", "any"),
        "dot_dot": _upload(settings, "..", settings.bucket, good_key),
        "slash": _upload(settings, "a/../b", settings.bucket, good_key),
        "too_long": _upload(settings, "x" * 129, settings.bucket, good_key),
        "ftp_callback": _upload(settings, "ftp-callback", settings.bucket, good_key, callback_url="ftp://h/x"),
        "metadata_callback": _upload(
            settings, "meta-callback", settings.bucket, good_key, callback_url="http://169.254.169.254/latest"
        ),
        "credentials_callback": _upload(
            settings, "cred-callback", settings.bucket, good_key, callback_url="https://u:pw@example.com/"
        ),
        "private_callback_bad_bucket": _upload(
            settings, "both-bad", other_bucket, "uploads/x/photo.jpg", callback_url="http://10.0.0.8/hook"
        ),
    }
    outputs_before = [k for k in _objects(settings, settings.bucket) if k.startswith(f"{settings.output_prefix}/")]
    topic = settings.topic(UPLOADED)
    for name, event in raw.items():
        produce(settings, UPLOADED, name, serdes.upload.encode(event, topic))

    failures = decode_all(read_topic(settings, settings.topic(FAILED), expect=len(raw)), serdes.failed)
    by_event = {f["upload_event_id"]: f for f in failures}
    expected = {
        "bucket_not_allowed": "bucket_not_allowed",
        "broker_log": "bucket_not_allowed",
        "dot_dot": "invalid_image_id",
        "slash": "invalid_image_id",
        "too_long": "invalid_image_id",
        "ftp_callback": "invalid_webhook_url",
        "metadata_callback": "webhook_target_blocked",
        "credentials_callback": "invalid_webhook_url",
        "private_callback_bad_bucket": "webhook_target_blocked",  # the callback is checked first
    }
    assert {name: by_event[raw[name]["event_id"]]["error_code"] for name in raw} == expected
    for name in (
        "ftp_callback",
        "metadata_callback",
        "credentials_callback",
        "private_callback_bad_bucket",
    ):  # a refused target is never called, not even to say so
        assert by_event[raw[name]["event_id"]]["callback_url"] is None
    # Nothing reached a step, so nothing was read; nothing was written anywhere.
    requests = read_topic(settings, settings.topic(step_topic("thumbnail")), idle_s=1.0)
    assert requests == []
    assert _objects(settings, other_bucket) == ["uploads/x/photo.jpg"]
    outputs = [k for k in _objects(settings, settings.bucket) if k.startswith(f"{settings.output_prefix}/")]
    assert outputs == outputs_before


def test_a_forged_step_request_for_another_bucket_reads_and_writes_nothing(
    settings: Settings, store: ObjectStore, other_bucket: str, workers: Supervisor
) -> None:
    serdes = Serdes(settings)
    upload = _upload(settings, "forged", other_bucket, "uploads/x/photo.jpg")
    request = events.step_request(
        upload, upload_event_id=upload["event_id"], pipeline=upload["pipeline"], step_index=0, input_key=upload["key"]
    )
    topic = settings.topic(step_topic("thumbnail"))
    produce(settings, step_topic("thumbnail"), "forged", serdes.step.encode(request, topic))
    (failure,) = decode_all(read_topic(settings, settings.topic(FAILED), expect=1), serdes.failed)
    assert (failure["error_code"], failure["failed_step"]) == ("bucket_not_allowed", "thumbnail")
    assert _objects(settings, other_bucket) == ["uploads/x/photo.jpg"]


def test_allowed_buckets_admit_the_listed_ones_and_never_the_broker_log(
    settings: Settings, store: ObjectStore, other_bucket: str
) -> None:
    allowed = settings.replace(allowed_buckets=f"{settings.bucket},{other_bucket}")
    supervisor = Supervisor(allowed, worker_specs(allowed, ["ingest", "thumbnail"]))
    supervisor.start()
    try:
        with Client(allowed, store) as client:
            sub = client.emit("uploads/x/photo.jpg", "thumbnail:sizes=64", bucket=other_bucket)
            final = client.wait([sub], timeout_s=90)[sub.image_id]
        assert final.status == "completed", final.event
        assert all(o["bucket"] == other_bucket for o in final.event["outputs"])
    finally:
        supervisor.stop.set()
        supervisor.join(30)
    assert allowed.buckets_allowed == {settings.bucket, other_bucket}
    with pytest.raises(Exception, match="darkroom-broker-log is darkroom's own"):
        load_settings({"DARKROOM_ALLOWED_BUCKETS": "darkroom,darkroom-broker-log"})


def test_the_client_refuses_what_ingest_would_before_storing_anything(settings: Settings, store: ObjectStore) -> None:
    with Client(settings, store) as client:
        with pytest.raises(InvalidImageId):
            client.submit(b"bytes", "a.jpg", "thumbnail", image_id="../escape")
        with pytest.raises(BucketNotAllowed):
            client.emit("uploads/x/photo.jpg", "thumbnail", bucket="elsewhere")
        with pytest.raises(InvalidWebhookUrl):
            client.submit(b"bytes", "a.jpg", "thumbnail", image_id="cb1", callback_url="http://user:pw@example.com/")
        with pytest.raises(WebhookTargetBlocked):
            client.submit(b"bytes", "a.jpg", "thumbnail", image_id="cb2", callback_url="http://10.0.0.8/hook")
    assert not [
        k for k in _objects(settings, settings.bucket) if k.startswith(("uploads/../", "uploads/cb1/", "uploads/cb2/"))
    ]


@pytest.mark.parametrize("image_id", ["a", "IMG_0001.jpg", "0" * 128, "2026-11-30T12.00.00_x"])
def test_ids_in_the_documented_set_pass(image_id: str) -> None:
    events.check_source({"image_id": image_id, "bucket": "b"}, {"b"})


@pytest.mark.parametrize("image_id", ["", ".", "..", "../x", "a/b", "-x", "a b", "é", "0" * 129, "a\nb"])
def test_ids_outside_it_fail(image_id: str) -> None:
    with pytest.raises(InvalidImageId):
        events.check_source({"image_id": image_id, "bucket": "b"}, {"b"})
