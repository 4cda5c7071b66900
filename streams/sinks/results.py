"""The result writer: a sink on the completed and failed topics, idempotent by construction.

Each batch is one transaction: upsert every image's final state and, when the stored
state changed, queue its webhook deliveries (an outbox, so pending webhooks are as
durable as the result). The loop commits the input offsets only after the transaction
committed. The database enforces idempotency, not a cache: ``results.image_id`` is the
primary key, and the stored final state follows one rule —

- a *newer* upload of the image (``submitted_at`` greater) supersedes whatever is stored;
- for the *same* upload, a completion supersedes a retryable failure (an outage that
  outlasted the retry budget, then a redelivery that succeeded), never the reverse;
- anything else (a redelivery, a replay, a late older upload) changes nothing and queues
  no webhook; ``(webhook_id, target)`` is the outbox key besides, so nothing is queued twice.

Outputs are trusted only inside their image's own step directories in an allowed bucket
(``trusted``): the HTTP API hands out download URLs for what is stored here, so a forged
final event naming another tenant's upload or the broker's log is refused as it is decoded
(``OutputOutsidePrefix``), which the loop dead-letters at once, before any transaction.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from streams.config import Settings
from streams.errors import OutputOutsidePrefix
from streams.observe import metrics
from streams.runtime.topics import COMPLETED, FAILED
from streams.runtime.worker import Event, Received, WorkerSpec
from streams.sinks.database import Database, Row, Transaction, now_ms
from streams.wire.events import FinalRecord, FinalStatus, Serdes, is_output_of

Enqueue = Callable[[Transaction, FinalStatus, Event], None]
"""Queues side effects of a final event (webhooks) inside the result's transaction."""

_UPSERT = """
INSERT INTO results (image_id, upload_event_id, final_event_id, status, error_code, message, retryable,
                     failed_step, outputs, timings, tenant, bucket, source_key, submitted_at, finished_at,
                     recorded_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (image_id) DO UPDATE SET
    upload_event_id = excluded.upload_event_id, final_event_id = excluded.final_event_id,
    status = excluded.status, error_code = excluded.error_code, message = excluded.message,
    retryable = excluded.retryable, failed_step = excluded.failed_step, outputs = excluded.outputs,
    timings = excluded.timings, tenant = excluded.tenant, bucket = excluded.bucket,
    source_key = excluded.source_key, submitted_at = excluded.submitted_at,
    finished_at = excluded.finished_at, recorded_at = excluded.recorded_at
WHERE results.submitted_at < excluded.submitted_at
   OR (results.upload_event_id = excluded.upload_event_id AND results.status = 'failed'
       AND results.retryable AND excluded.status = 'completed')
"""


def trusted(settings: Settings, event: FinalRecord) -> FinalRecord:
    """``event`` if every output it names is one of its image's (``is_output_of``) in a
    bucket of ``DARKROOM_ALLOWED_BUCKETS``; else ``OutputOutsidePrefix``."""
    allowed, image_id = settings.buckets_allowed, event["image_id"]
    for output in event["outputs"]:
        if output["bucket"] not in allowed or not is_output_of(output["key"], settings.output_prefix, image_id):
            where = ascii(f"{output['bucket']}/{output['key']}"[:200])
            raise OutputOutsidePrefix(
                f"output {where} is not under image {image_id}'s output prefix in an allowed bucket; not recorded"
            )
    return event


def _ms(value: datetime | int) -> int:
    return value if isinstance(value, int) else int(value.timestamp() * 1000)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def record_result(tx: Transaction, status: FinalStatus, event: Event) -> bool:
    """Store one final event; True if it created or advanced the image's row."""
    failed = status == "failed"
    finished = event["failed_at"] if failed else event["completed_at"]
    changed = tx.execute(
        _UPSERT,
        (
            event["image_id"],
            event["upload_event_id"],
            event["event_id"],
            status,
            event.get("error_code"),
            event.get("message"),
            event.get("retryable"),
            event.get("failed_step"),
            _json(event["outputs"]),
            _json(event["timings"]),
            event.get("tenant"),
            event["bucket"],
            event["source_key"],
            _ms(event["submitted_at"]),
            _ms(finished),
            now_ms(),
        ),
    )
    return changed > 0


def get_result(db: Database, image_id: str) -> Row | None:
    with db.transaction() as tx:
        rows = tx.query("SELECT * FROM results WHERE image_id = ?", (image_id,))
    if not rows:
        return None
    row = rows[0]
    row["outputs"] = json.loads(row["outputs"])
    if row["retryable"] is not None:  # SQLite stores BOOLEAN as 0/1; the contract says true/false
        row["retryable"] = bool(row["retryable"])
    row["timings"] = json.loads(row["timings"])
    return row


class ResultWriter:
    """The batch sink: one transaction per batch of final events."""

    def __init__(self, settings: Settings, db: Database, enqueue: Enqueue | None = None) -> None:
        self.settings = settings
        self.db = db
        self.completed_topic = settings.topic(COMPLETED)
        self.enqueue = enqueue

    def __call__(self, items: Sequence[tuple[Received, Event]], log: Any) -> None:
        started = time.perf_counter()
        with self.db.transaction() as tx:
            for msg, event in items:
                status: FinalStatus = "completed" if msg.topic == self.completed_topic else "failed"
                if not record_result(tx, status, event):
                    continue
                log.bind(topic=msg.topic, partition=msg.partition, offset=msg.offset).info(
                    "result recorded", image_id=event["image_id"], event_id=event["event_id"], status=status
                )
                if self.enqueue is not None and event.get("notify", True):  # replay --no-notify: no webhooks
                    self.enqueue(tx, status, event)
        metrics.RESULT_BATCH_SIZE.observe(len(items))
        metrics.RESULT_TRANSACTION.observe(time.perf_counter() - started)


def results_spec(
    settings: Settings, serdes: Serdes, db: Database, enqueue: Enqueue | None = None
) -> WorkerSpec[FinalRecord]:
    completed, failed = settings.topic(COMPLETED), settings.topic(FAILED)

    def decode(value: bytes | None, topic: str) -> FinalRecord:
        """The final event, if its outputs can be trusted (``trusted``): refused here, a
        forged one is dead-lettered at once, never retried as a sink that raised would be."""
        event = serdes.completed.decode(value, topic) if topic == completed else serdes.failed.decode(value, topic)
        return trusted(settings, event)

    return WorkerSpec(
        name="results",
        group_id=settings.topic("darkroom.results"),
        topics=(completed, failed),
        decode=decode,
        write=ResultWriter(settings, db, enqueue),
    )
