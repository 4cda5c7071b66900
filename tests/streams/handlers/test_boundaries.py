"""What an upload may name: allowed buckets, valid image ids, object keys and tenants,
admissible callbacks, and, for an image the HTTP API created, its own tenant and upload.

Raw events are produced the way any producer could (bypassing ``Client``, which refuses
the same things locally), through a real broker to real ingest and thumbnail workers.
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from minio import Minio

from streams.client import Client
from streams.config import Settings, load_settings
from streams.dev.samples import photo_jpeg
from streams.errors import BucketNotAllowed, InvalidImageId, InvalidWebhookUrl, WebhookTargetBlocked
from streams.handlers.steps import worker_specs
from streams.runtime.storage import ObjectStore
from streams.runtime.supervisor import Supervisor
from streams.runtime.topics import COMPLETED, DEAD_LETTER, FAILED, UPLOADED, step_topic
from streams.wire import events
from streams.wire.events import Serdes
from tests.helpers import decode_all, final_image, produce, read_topic

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


def test_uploads_naming_keys_or_tenants_darkroom_must_not_use_fail_and_the_partition_moves_on(
    settings: Settings, store: ObjectStore, workers: Supervisor
) -> None:
    """Before, ``uploads/x\\..\\y.png`` or a NUL in a key made the store answer ``InvalidRequest``,
    read as an outage: the thumbnail worker paused its partitions for up to a day, and the
    next upload of the same image waited behind it."""
    serdes = Serdes(settings)
    good_key = "uploads/same/photo.jpg"
    store.put(settings.bucket, good_key, photo_jpeg(320, 240, seed=4), content_type="image/jpeg")
    bad = {
        "backslash_dot_dot": _upload(settings, "same", settings.bucket, "uploads/x\\..\\y.png"),
        "nul": _upload(settings, "same", settings.bucket, "uploads/x\x00y.png"),
        "dot_dot": _upload(settings, "same", settings.bucket, "uploads/../same/photo.jpg"),
        "too_long": _upload(settings, "same", settings.bucket, "uploads/" + "k" * 1020),
        "tenant": _upload(settings, "same", settings.bucket, good_key, tenant="acme corp"),
    }
    good = _upload(settings, "same", settings.bucket, good_key, tenant="acme")
    topic = settings.topic(UPLOADED)
    for event in [*bad.values(), good]:  # one image, so one partition in every topic, in this order
        produce(settings, UPLOADED, "same", serdes.upload.encode(event, topic))

    (done,) = decode_all(read_topic(settings, settings.topic(COMPLETED), expect=1, timeout_s=90), serdes.completed)
    assert done["upload_event_id"] == good["event_id"] and done["tenant"] == "acme"
    failures = decode_all(read_topic(settings, settings.topic(FAILED), expect=len(bad), idle_s=1.0), serdes.failed)
    by_event = {f["upload_event_id"]: (f["error_code"], f["retryable"], f["failed_step"]) for f in failures}
    expected = {name: ("invalid_object_key", False, None) for name in bad} | {"tenant": ("invalid_tenant", False, None)}
    assert {name: by_event[event["event_id"]] for name, event in bad.items()} == expected
    requests = decode_all(read_topic(settings, settings.topic(step_topic("thumbnail")), idle_s=1.0), serdes.step)
    assert [r["upload_event_id"] for r in requests] == [good["event_id"]]  # nothing bad reached a step


def _unsigned(image: dict[str, Any]) -> dict[str, Any]:
    """An image as the API shows it, without what is signed anew at each answer."""
    outputs = [{k: v for k, v in o.items() if k not in {"url", "url_expires_at"}} for o in image["outputs"]]
    return {**image, "outputs": outputs}


def test_a_forged_upload_cannot_make_one_tenants_image_of_anothers_upload(settings: Settings, tmp_path: Path) -> None:
    """The attack: tenant B creates an image over the API and never uploads; an upload event on
    Kafka names B's image, ``tenant: B`` and tenant A's upload. Before, it completed, and B
    downloaded a thumbnail of A's picture. Now it is dead-lettered as ``upload_mismatch``:
    nothing is made of A's object for B, and no failure event replaces anyone's result (a
    forged upload naming A's finished image leaves A's result as it was). B's own upload
    still works afterwards."""
    from tests.streams.api.conftest import with_workers

    serdes = Serdes(settings)
    api_settings = settings.replace(database_url=f"sqlite:///{tmp_path / 'results.sqlite3'}")
    pipeline = "thumbnail:sizes=64"
    with contextlib.contextmanager(with_workers)(api_settings) as api:
        a_http = httpx.Client(base_url=api.url, headers=api.auth(api.token), timeout=30)
        b_http = httpx.Client(base_url=api.url, headers=api.auth(api.other_token), timeout=30)
        a = a_http.post("/v1/images", json={"pipeline": pipeline, "filename": "a.jpg"}).json()
        assert httpx.put(a["upload_url"], content=photo_jpeg(320, 240, seed=5)).status_code == 200
        assert a_http.post(a["start_url"]).status_code == 202
        a_done = final_image(a_http, a["status_url"])
        assert a_done["outputs"][0]["height"] == 48  # A's picture is 4:3
        b = b_http.post("/v1/images", json={"pipeline": pipeline, "filename": "b.jpg"}).json()

        a_key = events.upload_key(a["id"], "a.jpg")
        topic = api_settings.topic(UPLOADED)
        for image_id, tenant in ((b["id"], "globex"), (a["id"], "globex")):  # B's image of A's object; A's, as B
            forged = _upload(api_settings, image_id, settings.bucket, a_key, tenant=tenant)
            produce(api_settings, UPLOADED, image_id, serdes.upload.encode(forged, topic))
        dead = read_topic(api_settings, api_settings.topic(DEAD_LETTER), expect=2)
        assert sorted(d.key for d in dead) == sorted([a["id"], b["id"]])
        assert {d.headers["darkroom-error-code"] for d in dead} == {b"upload_mismatch"}
        assert all(a["id"].encode() not in d.headers["darkroom-error-message"] or d.key == a["id"] for d in dead)
        assert b_http.get(b["status_url"]).json()["status"] == "pending"  # nothing was made, nothing failed
        assert _unsigned(a_http.get(a["status_url"]).json()) == _unsigned(a_done)  # A's result as it was
        assert not [
            k for k in _objects(settings, settings.bucket) if k.startswith(f"{settings.output_prefix}/{b['id']}/")
        ]

        assert httpx.put(b["upload_url"], content=photo_jpeg(200, 200, seed=6)).status_code == 200
        started = b_http.post(b["start_url"])
        assert started.status_code == 202
        own = final_image(b_http, b["status_url"], started.json()["upload_event_id"])
        assert own["status"] == "completed" and own["outputs"][0]["height"] == 64  # B's own square picture
        a_http.close()
        b_http.close()
