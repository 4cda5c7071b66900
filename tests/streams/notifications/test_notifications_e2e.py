"""MinIO notifications through the real pipeline: the embedded broker and S3 server.

The object store here (SeaweedFS on the embedded stack) sends no notifications, so the
test writes the objects, then produces the records MinIO's Kafka target would write for
them (``samples.notification``: MinIO's documented format, keys escaped as MinIO escapes
them) to the notifications topic.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.client import Client, Submission
from streams.config import Settings
from streams.dev.samples import photo_jpeg
from streams.notifications import minio, worker
from streams.runtime.kafka import Record, deliver, make_producer
from streams.runtime.storage import ObjectStore
from streams.runtime.supervisor import Supervisor
from streams.runtime.topics import DEAD_LETTER, UPLOADED, ensure_topics
from streams.services import build_supervisor
from streams.sinks.database import Database
from streams.wire.events import Serdes
from tests.helpers import decode_all, read_topic
from tests.streams.notifications.samples import TRICKY_KEYS, notification

pytestmark = pytest.mark.integration

PIPELINE = "thumbnail:sizes=64,format=png"


@pytest.fixture
def notified(settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    """The notifications worker and the result writer (SQLite) on a topic of the test's own."""
    s = settings.replace(
        notifications_topic=f"minio-events-{uuid.uuid4().hex[:10]}",
        notification_rules=json.dumps([{"bucket": settings.bucket, "pipeline": PIPELINE}]),  # the whole bucket
        database_url=f"sqlite:///{tmp_path / 'results.sqlite3'}",
    )
    ensure_topics(s)
    supervisor = build_supervisor(s, ["notifications", "results"])
    supervisor.start()
    yield s
    supervisor.stop.set()
    supervisor.join(30)


def _put(store: ObjectStore, s: Settings, key: str, seed: int) -> str:
    data = photo_jpeg(160, 120, seed=seed)
    store.put(s.bucket, key, data, content_type="image/jpeg")
    return hashlib.md5(data).hexdigest()  # a single PUT's eTag


def _notify(s: Settings, *values: bytes) -> None:
    """Produce as MinIO does: one JSON record per event, keyed by ``<bucket>/<object>``."""
    deliver(make_producer(s), [Record(s.notifications_topic, _key(v), v) for v in values])


def _key(value: bytes) -> str | None:
    try:
        return str(json.loads(value)["Key"])
    except ValueError:
        return None  # not a notification


def _submission(value: bytes) -> Submission:
    """What ``Client.wait`` follows: the upload a notification makes."""
    (obj,) = minio.decode(value)
    return Submission(worker.image_id(obj.bucket, obj.key), worker.event_id(obj), obj.bucket, obj.key, [])


def _results(s: Settings, want: dict[str, str], timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """The result rows once each image's row names the upload in ``want`` (image id → upload event id)."""
    db = Database(s)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            with db.transaction() as tx:
                rows = tx.query("SELECT image_id, upload_event_id, status, source_key FROM results")
            if {r["image_id"]: r["upload_event_id"] for r in rows} == want or time.monotonic() > deadline:
                return rows
            time.sleep(0.5)
    finally:
        db.close()


def test_notifications_become_one_result_per_object_version(
    notified: Settings, store: ObjectStore, workers: Supervisor
) -> None:
    s = notified
    client = Client(s, store)
    keys = list(TRICKY_KEYS)  # a space, +, % and non-ASCII characters
    created = [
        notification(s.bucket, key, etag=_put(store, s, key, seed=i), sequencer=f"18A0000000000{i:03X}")
        for i, key in enumerate(keys)
    ]
    removed = notification(s.bucket, keys[1], event="s3:ObjectRemoved:Delete", sequencer="18A0000000001000")
    # MinIO replays its queue after reconnecting: the first notification comes twice
    _notify(s, *created, created[0], removed, b"<html>not a notification</html>")

    first = [_submission(v) for v in created]
    finals = client.wait(first, timeout_s=90)
    assert {sub.image_id: finals[sub.image_id].status for sub in first} == {sub.image_id: "completed" for sub in first}
    assert [finals[sub.image_id].event["source_key"] for sub in first] == keys
    outputs = [o["key"] for o in finals[first[0].image_id].event["outputs"]]
    assert outputs and all(store.stat(s.bucket, key).size > 0 for key in outputs)

    # darkroom's own outputs land in the bucket too: their notifications start nothing;
    # an overwrite with new bytes is a new upload of the same image
    overwrite = notification(
        s.bucket,
        keys[0],
        etag=_put(store, s, keys[0], seed=99),
        sequencer="18A0000000002000",
        time="2026-12-01T00:00:00.000Z",
    )
    _notify(s, *(notification(s.bucket, key, sequencer="18A0000000001800") for key in outputs), overwrite)
    second = _submission(overwrite)
    assert second.image_id == first[0].image_id and second.event_id != first[0].event_id
    final = client.wait([second], timeout_s=90)[second.image_id]
    assert final.status == "completed" and final.event["source_key"] == keys[0]

    uploads = decode_all(read_topic(s, s.topic(UPLOADED), expect=5), Serdes(s).upload)
    assert sorted(u["key"] for u in uploads) == sorted([*keys, keys[0], keys[0]])  # no output, no removal
    assert len({u["event_id"] for u in uploads}) == 4  # the replayed notification made the same upload

    want = {sub.image_id: sub.event_id for sub in [second, *first[1:]]}
    rows = _results(s, want)
    assert {r["image_id"]: r["upload_event_id"] for r in rows} == want  # one row per image: the newest upload
    assert sorted(r["source_key"] for r in rows) == sorted(keys) and {r["status"] for r in rows} == {"completed"}

    (dead,) = read_topic(s, s.topic(DEAD_LETTER), expect=1)
    assert dead.value == b"<html>not a notification</html>"
    assert dead.headers["darkroom-error-code"] == b"undecodable_event"
    assert dead.headers["darkroom-source-topic"] == s.notifications_topic.encode()
    client.close()


def test_a_notification_naming_a_key_darkroom_does_not_read_is_dead_lettered_and_the_next_one_runs(
    notified: Settings, store: ObjectStore, workers: Supervisor
) -> None:
    """Before, ``uploads/x\\..\\y/photo.png`` made the store answer ``InvalidRequest`` to the
    read of the API's order beside it: read as an outage, it stalled the notifications
    worker and every notification behind it on the partition."""
    s = notified
    good_key = "incoming/after.jpg"
    good = notification(s.bucket, good_key, etag=_put(store, s, good_key, seed=7))
    bad = [notification(s.bucket, "uploads/x\\..\\y/photo.png"), notification(s.bucket, "incoming/x\x00y.png")]
    # one record key, so one partition: the good notification waits behind the bad ones
    deliver(make_producer(s), [Record(s.notifications_topic, "same", v) for v in [*bad, good]])
    with Client(s, store) as client:
        final = client.wait([_submission(good)], timeout_s=90)[_submission(good).image_id]
    assert final.status == "completed"
    dead = read_topic(s, s.topic(DEAD_LETTER), expect=2, idle_s=1.0)
    assert [d.value for d in dead] == bad  # as they came, in order
    assert {d.headers["darkroom-error-code"] for d in dead} == {b"invalid_object_key"}
    assert b"backslash" in dead[0].headers["darkroom-error-message"]
    uploads = decode_all(read_topic(s, s.topic(UPLOADED), expect=1, idle_s=1.0), Serdes(s).upload)
    assert [u["key"] for u in uploads] == [good_key]  # nothing was made of the bad ones
