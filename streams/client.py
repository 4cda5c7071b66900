"""The producer SDK: upload an image, emit its upload event, follow it to its final event."""

from __future__ import annotations

import mimetypes
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from streams.config import Settings
from streams.errors import BrokerUnavailable, UndecodableEvent
from streams.runtime.egress import EgressGuard
from streams.runtime.kafka import Record, make_consumer
from streams.runtime.retry import retry
from streams.runtime.sender import Sender
from streams.runtime.storage import ObjectStore
from streams.runtime.topics import COMPLETED, FAILED, UPLOADED
from streams.runtime.worker import Received
from streams.wire import pipeline as pipelines
from streams.wire.events import (
    ImageCompleted,
    ImageFailed,
    Serdes,
    UploadEvent,
    check_source,
    idempotent_event_id,
    now,
    upload_event,
    upload_key,
)


@dataclass(frozen=True)
class Submission:
    image_id: str
    event_id: str
    bucket: str
    key: str
    pipeline: list[pipelines.Step]


@dataclass(frozen=True)
class Completion:
    """A submission's completion event."""

    event: ImageCompleted
    status: Literal["completed"] = field(default="completed", init=False)


@dataclass(frozen=True)
class Failure:
    """A submission's failure event."""

    event: ImageFailed
    status: Literal["failed"] = field(default="failed", init=False)


FinalEvent = Completion | Failure
"""A submission's final event; checking ``status`` tells a type checker which ``event`` it has."""


class Client:
    """Submit images and wait for their results. One instance per process is enough."""

    def __init__(self, settings: Settings, store: ObjectStore | None = None) -> None:
        self.settings = settings
        self.store = store or ObjectStore(settings)
        self.serdes = Serdes(settings)
        self._guard = EgressGuard.from_settings(settings)
        self._sender = Sender(settings)  # shared by the HTTP API's request threads

    def submit(
        self,
        data: bytes,
        filename: str | None,
        pipeline: str | Sequence[pipelines.Step],
        *,
        image_id: str | None = None,
        content_type: str | None = None,
        callback_url: str | None = None,
        tenant: str | None = None,
        idempotency_key: str | None = None,
    ) -> Submission:
        """Store ``data`` under ``upload_key(image id, filename)`` and emit its upload event.

        The other options are those of ``emit``. The pipeline, image id, tenant and callback
        are checked before anything is stored, so a typo fails at once instead of as a failure
        event later; the store is retried on outages (``DARKROOM_STORAGE_ATTEMPTS``).
        """
        steps = _steps(pipeline)
        image_id = image_id or uuid.uuid4().hex[:20]
        bucket = self.settings.bucket
        key = upload_key(image_id, filename)
        self._admit(image_id, bucket, key, tenant, callback_url)
        ctype = content_type or mimetypes.guess_type(filename or "")[0] or "application/octet-stream"
        s = self.settings
        retry(
            partial(self.store.put, bucket, key, data, content_type=ctype),
            attempts=s.storage_attempts,
            backoff_s=s.storage_backoff_s,
            what="upload",
        )
        return self.emit(
            key,
            steps,
            bucket=bucket,
            image_id=image_id,
            callback_url=callback_url,
            tenant=tenant,
            idempotency_key=idempotency_key,
        )

    def emit(
        self,
        key: str,
        pipeline: str | Sequence[pipelines.Step],
        *,
        bucket: str | None = None,
        image_id: str | None = None,
        callback_url: str | None = None,
        tenant: str | None = None,
        idempotency_key: str | None = None,
    ) -> Submission:
        """Emit the upload event for an object already in storage (idempotent producer, acks=all).

        With ``idempotency_key`` the event id is derived from it, so emitting again
        yields the same ids downstream.
        """
        steps = _steps(pipeline)
        event_id = idempotent_event_id(tenant, idempotency_key) if idempotency_key else str(uuid.uuid4())
        image_id = image_id or event_id.replace("-", "")[:20]
        bucket = bucket or self.settings.bucket
        self._admit(image_id, bucket, key, tenant, callback_url)
        event = upload_event(
            event_id=event_id,
            image_id=image_id,
            bucket=bucket,
            key=key,
            pipeline=steps,
            callback_url=callback_url,
            tenant=tenant,
            idempotency_key=idempotency_key,
            submitted_at=now(),
        )
        self.send(event)
        return Submission(image_id, event_id, bucket, key, steps)

    def send(self, *events: UploadEvent) -> None:
        """Produce upload events as built (a replay's, say) and wait for the broker's
        acknowledgement of every one (``streams.runtime.sender``); ``emit`` builds one and sends it here."""
        topic = self.settings.topic(UPLOADED)
        records = [Record(topic, e["image_id"], self.serdes.upload.encode(e, topic)) for e in events]
        self._sender.send(records, "the upload event")

    def _admit(self, image_id: str, bucket: str, key: str, tenant: str | None, callback_url: str | None) -> None:
        """Refuse here what ingest would refuse (id, bucket, key, tenant, callback), before anything is stored."""
        source = {"image_id": image_id, "bucket": bucket, "key": key, "tenant": tenant}
        check_source(source, self.settings.buckets_allowed)
        if callback_url:
            self._guard.admit(callback_url)

    def submit_file(self, path: Path, pipeline: str | Sequence[pipelines.Step], **kwargs: Any) -> Submission:
        return self.submit(path.read_bytes(), path.name, pipeline, **kwargs)

    def wait(
        self,
        submissions: Iterable[Submission],
        *,
        timeout_s: float = 300.0,
        on_final: Callable[[Submission, FinalEvent], None] | None = None,
    ) -> dict[str, FinalEvent]:
        """Read the completed and failed topics until every submission has its final event.

        Reads from the beginning without a consumer group (nothing is committed), matching
        on the upload event id, so it never confuses two uploads of one image. Returns what
        arrived by ``timeout_s``; the caller checks for missing ones.
        """
        pending = {sub.event_id: sub for sub in submissions}
        results: dict[str, FinalEvent] = {}
        topics = {self.settings.topic(COMPLETED): "completed", self.settings.topic(FAILED): "failed"}
        consumer = make_consumer(self.settings, f"darkroom-wait-{uuid.uuid4()}")
        try:
            metadata = consumer.list_topics(timeout=10)
            partitions = [
                TopicPartition(topic, p, OFFSET_BEGINNING)
                for topic in topics
                if topic in metadata.topics
                for p in metadata.topics[topic].partitions
            ]
            if not partitions:
                raise BrokerUnavailable(f"topics {', '.join(topics)} do not exist: is the pipeline provisioned?")
            consumer.assign(partitions)
            deadline = time.monotonic() + timeout_s
            while pending and time.monotonic() < deadline:
                polled = consumer.poll(0.5)
                if polled is None or polled.error():
                    continue
                msg = Received.of(polled)
                try:
                    final: FinalEvent = (
                        Completion(self.serdes.completed.decode(msg.value, msg.topic))
                        if topics[msg.topic] == "completed"
                        else Failure(self.serdes.failed.decode(msg.value, msg.topic))
                    )
                except UndecodableEvent:
                    continue  # not ours to judge; the sinks dead-letter such records
                sub = pending.pop(final.event["upload_event_id"], None)
                if sub is None:
                    continue
                results[sub.image_id] = final
                if on_final:
                    on_final(sub, final)
        finally:
            consumer.close()
        return results

    def close(self) -> None:
        """Flush what is queued and release the producer's connections."""
        self._sender.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _steps(pipeline: str | Sequence[pipelines.Step]) -> list[pipelines.Step]:
    steps = pipelines.parse_spec(pipeline) if isinstance(pipeline, str) else list(pipeline)
    pipelines.validate(steps)
    return steps


def summarize(sub: Submission, final: FinalEvent | None) -> dict[str, Any]:
    """A flat, JSON-ready view of one submission's outcome (for the CLI and the demo)."""
    row: dict[str, Any] = {
        "image_id": sub.image_id,
        "event_id": sub.event_id,
        "status": final.status if final else "timeout",
    }
    if final is None:
        return row
    if final.status == "completed":
        row["outputs"] = [
            {k: o[k] for k in ("name", "key", "width", "height", "size", "content_type", "sha256")}
            for o in final.event["outputs"]
        ]
        row["timings"] = [
            {k: t[k] for k in ("operation", "backend", "details", "duration_ms", "reused")}
            for t in final.event["timings"]
        ]
    else:
        row["error"] = {k: final.event[k] for k in ("error_code", "message", "failed_step", "retryable")}
    return row
