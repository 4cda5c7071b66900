"""Building the pipeline's events; every derived event id is a function of the upload.

Ids are UUIDv5 of the upload event id and the event's role, so a redelivered or replayed
upload yields the same step-request, completion and failure ids: sinks deduplicate on
them and webhooks keep one ``webhook-id``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from processors.errors import BucketNotAllowed, DarkroomError, InvalidImageId
from streams.config import Settings
from streams.wire.serde import Serde

Event = dict[str, Any]
FinalStatus = Literal["completed", "failed"]
_NAMESPACE = uuid.UUID("6f1d9a52-4d2e-4f0e-9a43-6d61726b726f")


IMAGE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
"""Image ids: 1–128 of ``A-Z a-z 0-9 . _ -``, starting with a letter or digit. The id is a
segment of every output key and a Kafka key, so no ``/``, no ``..`` segment, no spaces."""


def check_source(event: Event, allowed_buckets: Collection[str]) -> None:
    """Refuse an upload or step request whose image id or bucket darkroom must not use.

    Called before anything is read, so a producer cannot aim workers at another bucket
    their credentials reach (the broker's log, another team's) or at keys outside the image's.
    """
    if not isinstance(event.get("image_id"), str) or not IMAGE_ID.fullmatch(event["image_id"]):
        raise InvalidImageId("image id must be 1-128 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit")
    if event["bucket"] not in allowed_buckets:
        raise BucketNotAllowed(f"bucket {event['bucket']!r} is not in DARKROOM_ALLOWED_BUCKETS")


def derived_id(upload_event_id: str, role: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{upload_event_id}/{role}"))


def idempotent_event_id(tenant: str | None, idempotency_key: str) -> str:
    """The event id of an upload emitted with ``idempotency_key``: the same however often,
    and by whichever way, it is emitted (``Client.emit``, the notification ingest)."""
    return derived_id(f"idempotency/{tenant or ''}", idempotency_key)


def api_order_key(output_prefix: str, image_id: str) -> str:
    """Where the HTTP API keeps what an image it created is to become, beside the upload:
    the notification ingest reads it when the upload lands (under the output prefix, so
    its own notification starts nothing)."""
    return f"{output_prefix.strip('/')}/api-orders/{image_id}.json"


def now() -> datetime:
    return datetime.now(UTC)


class Serdes:
    """One serde per record type, built once per process from the settings."""

    def __init__(self, settings: Settings) -> None:
        url = settings.schema_registry_url
        self.upload = Serde("UploadEvent", registry_url=url)
        self.step = Serde("StepRequest", registry_url=url)
        self.completed = Serde("ImageCompleted", registry_url=url)
        self.failed = Serde("ImageFailed", registry_url=url)


def step_request(
    base: Event,
    *,
    upload_event_id: str,
    pipeline: Sequence[dict[str, Any]],
    step_index: int,
    input_key: str,
    outputs: Sequence[Event] = (),
    timings: Sequence[Event] = (),
) -> Event:
    """The request for ``pipeline[step_index]``; ``base`` is the upload or previous request."""
    return {
        "event_id": derived_id(upload_event_id, f"step/{step_index}"),
        "upload_event_id": upload_event_id,
        "image_id": base["image_id"],
        "bucket": base["bucket"],
        "source_key": base.get("source_key", base.get("key")),
        "pipeline": list(pipeline),
        "step_index": step_index,
        "input_key": input_key,
        "outputs": list(outputs),
        "timings": list(timings),
        "callback_url": base.get("callback_url"),
        "tenant": base.get("tenant"),
        "submitted_at": base["submitted_at"],
        **replay_fields(base),
    }


def replay_fields(base: Event) -> Event:
    """What a replay adds to an upload and every event derived from it (defaults for originals)."""
    return {
        "replay_of": base.get("replay_of"),
        "force": bool(base.get("force", False)),
        "notify": bool(base.get("notify", True)),
    }


def completed(request: Event, outputs: Sequence[Event], timings: Sequence[Event]) -> Event:
    return {
        "event_id": derived_id(request["upload_event_id"], "completed"),
        "upload_event_id": request["upload_event_id"],
        "image_id": request["image_id"],
        "bucket": request["bucket"],
        "source_key": request["source_key"],
        "pipeline": request["pipeline"],
        "outputs": list(outputs),
        "timings": list(timings),
        "callback_url": request["callback_url"],
        "tenant": request["tenant"],
        "submitted_at": request["submitted_at"],
        "completed_at": now(),
        **replay_fields(request),
    }


def failed(
    base: Event,
    error: DarkroomError,
    *,
    upload_event_id: str,
    step_index: int | None,
    failed_step: str | None,
    outputs: Sequence[Event] = (),
    timings: Sequence[Event] = (),
) -> Event:
    return {
        "event_id": derived_id(upload_event_id, "failed"),
        "upload_event_id": upload_event_id,
        "image_id": base["image_id"],
        "bucket": base["bucket"],
        "source_key": base.get("source_key", base.get("key")),
        "error_code": error.code,
        "message": error.message,
        "retryable": error.retryable,
        "failed_step": failed_step,
        "step_index": step_index,
        "outputs": list(outputs),
        "timings": list(timings),
        "callback_url": base.get("callback_url"),
        "tenant": base.get("tenant"),
        "submitted_at": base["submitted_at"],
        "failed_at": now(),
        **replay_fields(base),
    }
