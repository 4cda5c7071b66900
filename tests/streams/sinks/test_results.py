"""The result writer's idempotency is enforced by the database, on PostgreSQL and SQLite."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from streams.config import Settings
from streams.sinks.database import Database
from streams.sinks.results import get_result, record_result


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
