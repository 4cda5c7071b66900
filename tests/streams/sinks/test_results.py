"""The result writer's idempotency is enforced by the database, on PostgreSQL and SQLite."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
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


@pytest.fixture
def db(database_url: str, tmp_path: Any) -> Iterator[Database]:
    database = Database(dataclasses.replace(Settings(home=tmp_path), database_url=database_url))
    database.migrate()
    yield database
    database.close()


def count(db: Database) -> int:
    with db.transaction() as tx:
        return int(tx.query("SELECT COUNT(*) AS n FROM results")[0]["n"])


def test_migrations_are_versioned_and_applied_once(db: Database) -> None:
    assert db.migrate() == []
    with db.transaction() as tx:
        assert [r["version"] for r in tx.query("SELECT version FROM schema_migrations")] == [1]


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
