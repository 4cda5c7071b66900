"""The producer SDK on the real broker and S3 server: submit, send, wait."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from processors.errors import UnknownOperation
from streams.client import Client, Completion, Failure, Submission, summarize
from streams.config import Settings
from streams.dev.samples import photo_jpeg
from streams.errors import InvalidImageId, InvalidObjectKey, InvalidTenant, ObjectMissing, OutputRejected
from streams.runtime.storage import ObjectStore
from streams.runtime.supervisor import Supervisor
from streams.runtime.topics import UPLOADED
from streams.wire.events import Serdes, idempotent_event_id, upload_event
from tests.helpers import read_topic

pytestmark = pytest.mark.integration

STEPS = [{"operation": "thumbnail", "params": {"sizes": "64"}}]


def _id(name: str) -> str:
    """An image id of this test run's own: the bucket is shared by every test and run."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


def test_submit_stores_the_bytes_under_the_upload_key_and_emits_the_event_naming_them(
    settings: Settings, store: ObjectStore
) -> None:
    data = photo_jpeg(320, 240, seed=1)
    first_id, long_id = _id("c1"), _id("c2")
    with Client(settings, store) as client:
        sub = client.submit(
            data,
            "../holiday/.My Photo (1).JPG",
            "thumbnail:sizes=64",
            image_id=first_id,
            tenant="acme",
            idempotency_key=first_id,
        )
        long = client.submit(data, "x" * 300 + ".jpg", STEPS, image_id=long_id)
    key = f"uploads/{first_id}/My_Photo_1_.JPG"
    assert sub == Submission(first_id, idempotent_event_id("acme", first_id), settings.bucket, key, STEPS)
    assert long.key == f"uploads/{long_id}/" + "x" * 100
    assert store.get(settings.bucket, sub.key) == data
    assert store.get(settings.bucket, long.key) == data
    topic = settings.topic(UPLOADED)
    records = {r.key: r for r in read_topic(settings, topic, expect=2)}  # partitions: no order between them
    assert set(records) == {first_id, long_id}
    first = Serdes(settings).upload.decode(records[first_id].value, topic)
    assert first == upload_event(
        event_id=sub.event_id,
        image_id=first_id,
        bucket=settings.bucket,
        key=key,
        pipeline=STEPS,
        tenant="acme",
        idempotency_key=first_id,
        submitted_at=first["submitted_at"],
    )
    assert abs((datetime.now(UTC) - first["submitted_at"]).total_seconds()) < 60


def test_submit_refuses_a_bad_request_before_storing_anything(settings: Settings, store: ObjectStore) -> None:
    image_id = _id("r1")
    with Client(settings, store) as client:
        with pytest.raises(UnknownOperation):
            client.submit(b"bytes", "a.jpg", "sharpen:amount=2", image_id=image_id)
        with pytest.raises(InvalidImageId):
            client.submit(b"bytes", "a.jpg", STEPS, image_id=f"../{image_id}")
        for tenant in ("acme corp", "", "../acme", "t" * 65):
            with pytest.raises(InvalidTenant):
                client.submit(b"bytes", "a.jpg", STEPS, image_id=image_id, tenant=tenant)
            with pytest.raises(InvalidTenant):
                client.emit(f"uploads/{image_id}/a.jpg", STEPS, image_id=image_id, tenant=tenant)
        for key in ("uploads/x\\..\\y.png", "uploads/x\x00y.png", "uploads/../a.jpg", ""):
            with pytest.raises(InvalidObjectKey):
                client.emit(key, STEPS, image_id=image_id)
    for key in (f"uploads/{image_id}/a.jpg", f"uploads/../{image_id}/a.jpg"):
        with pytest.raises(ObjectMissing):
            store.stat(settings.bucket, key)
    assert read_topic(settings, settings.topic(UPLOADED), idle_s=1) == []


def test_send_produces_prebuilt_events_as_built_and_refuses_what_the_broker_refuses(settings: Settings) -> None:
    when = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    built = [
        upload_event(event_id=f"e{i}", image_id=f"s{i}", bucket=settings.bucket, key=f"k{i}", submitted_at=when)
        for i in range(3)
    ]
    huge = upload_event(event_id="big", image_id="big", bucket=settings.bucket, key="k" * 2000, submitted_at=when)
    topic = settings.topic(UPLOADED)
    serde = Serdes(settings).upload
    with Client(settings.replace(max_message_bytes=1024)) as client:
        client.send(*built)
        with pytest.raises(OutputRejected, match="refused the upload event"):
            client.send(huge)
        client.send(built[0])  # the producer is still usable: a refusal is not an outage
    records = read_topic(settings, topic, expect=4)  # in order within a partition (a key's), not across them
    assert sorted((r.key, r.value) for r in records) == sorted(
        (e["image_id"], serde.encode(e, topic)) for e in [*built, built[0]]
    )


def test_wait_follows_each_submission_to_its_final_event(
    settings: Settings, store: ObjectStore, workers: Supervisor
) -> None:
    with Client(settings, store) as client:
        good = client.submit(photo_jpeg(320, 240, seed=2), "good.jpg", STEPS, image_id=_id("w1"))
        bad = client.submit(b"not an image at all\n" * 8, "bad.jpg", STEPS, image_id=_id("w2"))
        never = Submission(_id("w3"), "no-such-event", settings.bucket, "uploads/w3/x.jpg", STEPS)
        seen: list[str] = []
        finals = client.wait([good, bad], timeout_s=90, on_final=lambda sub, _final: seen.append(sub.image_id))
        assert client.wait([never], timeout_s=2) == {}
    assert sorted(seen) == sorted([good.image_id, bad.image_id])
    done, failed = finals[good.image_id], finals[bad.image_id]
    assert isinstance(done, Completion) and done.status == "completed"
    assert done.event["upload_event_id"] == good.event_id and done.event["source_key"] == good.key
    assert [(o["width"], o["height"]) for o in done.event["outputs"]] == [(64, 48)]
    assert isinstance(failed, Failure) and failed.status == "failed"
    assert (failed.event["error_code"], failed.event["retryable"]) == ("not_an_image", False)
    assert summarize(good, done)["outputs"][0]["key"] == done.event["outputs"][0]["key"]
    assert summarize(bad, failed)["error"]["error_code"] == "not_an_image"
    assert summarize(never, None) == {"image_id": never.image_id, "event_id": "no-such-event", "status": "timeout"}
