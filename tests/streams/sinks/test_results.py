"""The result writer's idempotency is enforced by the database, on PostgreSQL and SQLite."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from streams.config import Settings
from streams.errors import OutputOutsidePrefix, UndecodableEvent
from streams.runtime.kafka import Record, deliver, make_producer
from streams.runtime.supervisor import Supervisor
from streams.runtime.topics import COMPLETED, DEAD_LETTER
from streams.sinks.database import Database
from streams.sinks.outbox import enqueue
from streams.sinks.results import get_result, record_result, results_spec, trusted
from streams.wire.events import Serdes
from tests.helpers import read_topic


def completed_event(image_id: str, upload: str, submitted: datetime, key: str = "derived/x/a.jpg") -> dict[str, Any]:
    output = {
        "step_index": 0,
        "operation": "thumbnail",
        "name": "thumb-256",
        "bucket": "darkroom",
        "key": key,
        "size": 1234,
        "width": 256,
        "height": 171,
        "content_type": "image/jpeg",
        "sha256": "ab" * 32,
    }
    return {
        "event_id": f"done-{upload}",
        "upload_event_id": upload,
        "image_id": image_id,
        "bucket": "darkroom",
        "source_key": "uploads/x/a.jpg",
        "pipeline": [],
        "outputs": [output],
        "timings": [],
        "callback_url": None,
        "tenant": "acme",
        "submitted_at": submitted,
        "completed_at": submitted + timedelta(seconds=2),
    }


def failed_event(image_id: str, upload: str, submitted: datetime) -> dict[str, Any]:
    return {
        "event_id": f"fail-{upload}",
        "upload_event_id": upload,
        "image_id": image_id,
        "bucket": "darkroom",
        "source_key": "uploads/x/a.jpg",
        "error_code": "not_an_image",
        "message": "nope",
        "retryable": False,
        "failed_step": "thumbnail",
        "step_index": 0,
        "outputs": [],
        "timings": [],
        "callback_url": None,
        "tenant": None,
        "submitted_at": submitted,
        "failed_at": submitted + timedelta(seconds=1),
    }


def count(db: Database) -> int:
    with db.transaction() as tx:
        return int(tx.query("SELECT COUNT(*) AS n FROM results")[0]["n"])


def test_migrations_are_versioned_and_applied_once(db: Database) -> None:
    assert db.migrate() == []
    with db.transaction() as tx:
        assert [r["version"] for r in tx.query("SELECT version FROM schema_migrations ORDER BY version")] == [1, 2, 3]


def test_a_redelivered_event_neither_adds_a_row_nor_changes_it(db: Database) -> None:
    t0 = datetime(2026, 5, 1, tzinfo=UTC)
    event = completed_event("img", "u1", t0)
    with db.transaction() as tx:
        assert record_result(tx, "completed", event)
    stored = get_result(db, "img")
    with db.transaction() as tx:
        assert not record_result(tx, "completed", event)
        assert not record_result(tx, "completed", {**event, "completed_at": t0 + timedelta(hours=1)})
    assert count(db) == 1
    assert get_result(db, "img") == stored


def test_an_older_upload_never_moves_a_result_backwards(db: Database) -> None:
    t0 = datetime(2026, 5, 1, tzinfo=UTC)
    with db.transaction() as tx:
        record_result(tx, "completed", completed_event("img", "new", t0 + timedelta(minutes=5), key="new.jpg"))
        assert not record_result(tx, "failed", failed_event("img", "old", t0))
        assert not record_result(tx, "completed", completed_event("img", "old", t0, key="old.jpg"))
    row = get_result(db, "img")
    assert row is not None
    assert (row["status"], row["upload_event_id"], row["outputs"][0]["key"]) == ("completed", "new", "new.jpg")


def test_a_newer_upload_of_the_image_replaces_the_result(db: Database) -> None:
    t0 = datetime(2026, 5, 1, tzinfo=UTC)
    with db.transaction() as tx:
        record_result(tx, "failed", failed_event("img", "first", t0))
        assert record_result(tx, "completed", completed_event("img", "second", t0 + timedelta(seconds=1)))
    row = get_result(db, "img")
    assert row is not None and row["status"] == "completed" and row["final_event_id"] == "done-second"
    assert count(db) == 1


def test_the_first_final_state_of_one_upload_wins(db: Database) -> None:
    t0 = datetime(2026, 5, 1, tzinfo=UTC)
    with db.transaction() as tx:
        record_result(tx, "completed", completed_event("img", "u", t0))
        assert not record_result(tx, "failed", failed_event("img", "u", t0))
    row = get_result(db, "img")
    assert row is not None and row["status"] == "completed"


def test_a_failed_transaction_writes_nothing(db: Database) -> None:
    t0 = datetime(2026, 5, 1, tzinfo=UTC)
    with pytest.raises(RuntimeError), db.transaction() as tx:
        record_result(tx, "completed", completed_event("img", "u", t0))
        raise RuntimeError("crash mid-batch")
    assert count(db) == 0


def _write(db: Database, *events: tuple[str, dict[str, Any]]) -> list[str]:
    """Run the result writer over ``events``; return the event ids whose webhooks it queued."""
    from streams.runtime.worker import Received
    from streams.sinks.results import ResultWriter

    queued: list[str] = []
    settings = Settings(home=Path("/nonexistent"))
    writer = ResultWriter(settings, db, lambda _tx, _status, event: queued.append(event["event_id"]))
    topic = {"completed": settings.topic("images.completed"), "failed": settings.topic("images.failed")}
    writer([(Received(topic[status], 0, i, b"k", b""), e) for i, (status, e) in enumerate(events)], _quiet())
    return queued


def _quiet() -> Any:
    import structlog

    return structlog.get_logger("test")


def test_a_completion_supersedes_a_retryable_failure_of_the_same_upload_never_the_reverse(db: Database) -> None:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    outage = {**failed_event("img", "u1", t), "error_code": "storage_unavailable", "retryable": True}
    assert _write(db, ("failed", outage)) == ["fail-u1"]
    assert _write(db, ("completed", completed_event("img", "u1", t))) == ["done-u1"]
    row = get_result(db, "img")
    assert row is not None and row["status"] == "completed" and row["final_event_id"] == "done-u1"
    # the failure arriving again (a redelivery) changes nothing and sends nothing
    assert _write(db, ("failed", outage)) == []
    row = get_result(db, "img")
    assert row is not None and row["status"] == "completed"


def test_a_permanent_failure_is_not_superseded_by_the_same_upload(db: Database) -> None:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    assert _write(db, ("failed", failed_event("img", "u1", t))) == ["fail-u1"]
    assert _write(db, ("completed", completed_event("img", "u1", t))) == []
    row = get_result(db, "img")
    assert row is not None and row["status"] == "failed"


def test_webhooks_are_queued_only_when_the_stored_state_changed(db: Database) -> None:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    newer = completed_event("img", "u2", t + timedelta(minutes=1))
    older = completed_event("img", "u1", t)
    assert _write(db, ("completed", newer)) == ["done-u2"]
    assert _write(db, ("completed", older)) == []  # a late, older upload: no row change, no webhook
    assert _write(db, ("completed", newer)) == []  # a redelivery
    row = get_result(db, "img")
    assert row is not None and row["upload_event_id"] == "u2"


OWN = "derived/img-b/00-thumbnail-0123456789abcdef/thumb-256.webp"
"""An output of image ``img-b`` as its step names it."""


@pytest.mark.parametrize(
    ("bucket", "key"),
    [
        ("darkroom", "uploads/img-a/photo.jpg"),  # another tenant's upload
        ("darkroom-broker-log", "clusters/tansu/topics/images.uploaded/0/0"),  # the broker's own log
        ("elsewhere", OWN),  # the image's key, in a bucket not allowed
        ("darkroom", "derived/img-a/00-thumbnail-0123456789abcdef/thumb-256.webp"),  # another image's output
        ("darkroom", "derived/img-b/00-thumbnail-0123456789abcdef/../../img-a/00-t-0123456789abcdef/x.webp"),
        ("darkroom", "derived/img-b/../api-orders/img-a.json"),
        ("darkroom", "derived/api-orders/img-a.json"),
        ("darkroom", "derived/img-bb/00-thumbnail-0123456789abcdef/thumb-256.webp"),
    ],
)
def test_final_events_naming_outputs_outside_their_images_prefix_are_refused(bucket: str, key: str) -> None:
    settings = Settings(home=Path("/nonexistent"))
    t = datetime(2026, 1, 1, tzinfo=UTC)
    good = completed_event("img-b", "u1", t, key=OWN)
    assert trusted(settings, good) == good
    forged = completed_event("img-b", "u1", t, key=key)
    forged["outputs"] = [*good["outputs"], {**forged["outputs"][0], "bucket": bucket}]
    failed = {**failed_event("img-b", "u1", t), "outputs": forged["outputs"]}  # a failure lists the outputs made
    for event in (forged, failed):
        with pytest.raises(OutputOutsidePrefix) as info:
            trusted(settings, event)
        assert (info.value.code, info.value.retryable) == ("output_outside_prefix", False)
        assert isinstance(info.value, UndecodableEvent)  # what the loop dead-letters at once
        assert bucket in info.value.message


@pytest.mark.integration
def test_a_forged_completion_is_dead_lettered_at_once_and_changes_nothing(settings: Settings, tmp_path: Path) -> None:
    """Through the broker to a running result writer: a completion for image B naming
    tenant A's upload and the broker's log. Before, it replaced B's result (and the API
    presigned those objects for B); now it is dead-lettered with the reason, without the
    retries a sink that raises gets, and the records after it are written."""
    settings = settings.replace(
        database_url=f"sqlite:///{tmp_path / 'results.sqlite3'}",
        poison_attempts=3,
        retry_backoff_s=60.0,  # a retried record would wait at least 30 s before its dead letter
        retry_max_backoff_s=60.0,
    )
    serdes, topic = Serdes(settings), settings.topic(COMPLETED)
    db = Database(settings)
    db.migrate()
    t = datetime.now(UTC)
    hook = {"callback_url": "https://hooks.example.com/b"}
    first = {**completed_event("img-b", "u1", t, key=OWN), **hook}
    forged = {**completed_event("img-b", "u2", t + timedelta(seconds=1), key="uploads/img-a/photo.jpg"), **hook}
    forged["outputs"].append(
        {**forged["outputs"][0], "bucket": "darkroom-broker-log", "key": "clusters/tansu/topics/x/0/0"}
    )
    after = {**completed_event("img-c", "u3", t, key=OWN.replace("img-b", "img-c")), **hook}
    records = [Record(topic, "img-b", serdes.completed.encode(e, topic)) for e in (first, forged, after)]
    writer = Supervisor(settings, [results_spec(settings, serdes, db, enqueue)])
    writer.start()
    try:
        deliver(make_producer(settings), records[:1])  # one record key, so one partition, in this order
        stored = _when_stored(db, "img-b")
        started = time.monotonic()
        deliver(make_producer(settings), records[1:])
        (dead,) = read_topic(settings, settings.topic(DEAD_LETTER), expect=1, timeout_s=25, idle_s=0.5)
        assert time.monotonic() - started < 25  # at once: no retries first
        _when_stored(db, "img-c")  # the partition moved on
    finally:
        writer.stop.set()
        writer.join(30)
    assert dead.headers["darkroom-error-code"] == b"output_outside_prefix"
    assert b"uploads/img-a/photo.jpg" in dead.headers["darkroom-error-message"]
    assert dead.value == records[1].value  # the record as it came
    assert get_result(db, "img-b") == stored  # unchanged
    with db.transaction() as tx:
        queued = tx.query("SELECT webhook_id FROM webhook_deliveries WHERE image_id = ?", ("img-b",))
    assert [row["webhook_id"] for row in queued] == ["done-u1"]  # no webhook for the forgery
    db.close()


def _when_stored(db: Database, image_id: str, timeout_s: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while (row := get_result(db, image_id)) is None:
        assert time.monotonic() < deadline, f"no result for {image_id}"
        time.sleep(0.2)
    return row
