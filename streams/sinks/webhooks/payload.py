"""The webhook body: thin, deterministic JSON for an ``ImageCompleted`` / ``ImageFailed`` event.

The outbox stores these bytes when it queues a delivery, and every attempt, retry and
replay sends exactly them, so a signature made once stays true.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

MAX_PAYLOAD_BYTES = 20_000
"""Standard Webhooks recommends payloads under ~20 KB; outputs are truncated to fit."""
MAX_MESSAGE_CHARS = 1_000
EVENT_TYPES: dict[str, str] = {"completed": "image.completed", "failed": "image.failed"}

_OUTPUT_FIELDS = (
    "step_index",
    "operation",
    "name",
    "bucket",
    "key",
    "size",
    "width",
    "height",
    "content_type",
    "sha256",
)


def _iso(value: Any) -> str | None:
    """ISO-8601 UTC with milliseconds and ``Z``; Avro timestamp-millis decode to datetimes."""
    if value is None:
        return None
    if isinstance(value, int | float):
        value = datetime.fromtimestamp(value / 1000, tz=UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return str(value.astimezone(UTC).isoformat(timespec="milliseconds")).replace("+00:00", "Z")


def _encode(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def payload_for(event: Mapping[str, Any], status: Literal["completed", "failed"]) -> bytes:
    """The thin JSON body for an ``ImageCompleted`` / ``ImageFailed`` event.

    ``{"type": "image.completed"|"image.failed", "timestamp": <event time>, "data": {…}}``:
    ids, tenant, status, the outputs' keys, sizes and digests (never image bytes) and, for
    failures, the error. Deterministic: the same event gives the same bytes, so a replay
    re-sends exactly what was signed before. Under ``MAX_PAYLOAD_BYTES``: outputs beyond
    what fits are left out and ``outputs_truncated`` says so (``outputs_total`` counts all).
    The callback URL is left out: it may carry a token.
    """
    if status not in EVENT_TYPES:
        raise ValueError(f"status must be 'completed' or 'failed', got {status!r}")
    at_field = "completed_at" if status == "completed" else "failed_at"
    data: dict[str, Any] = {
        "event_id": event["event_id"],
        "upload_event_id": event["upload_event_id"],
        "image_id": event["image_id"],
        "tenant": event.get("tenant"),
        "status": status,
        "bucket": event["bucket"],
        "source_key": event["source_key"],
        "submitted_at": _iso(event.get("submitted_at")),
        at_field: _iso(event.get(at_field)),
    }
    if status == "failed":
        data.update(
            error_code=event["error_code"],
            message=str(event["message"])[:MAX_MESSAGE_CHARS],
            retryable=bool(event["retryable"]),
            failed_step=event.get("failed_step"),
            step_index=event.get("step_index"),
        )
    outputs = [{k: o.get(k) for k in _OUTPUT_FIELDS} for o in event.get("outputs") or ()]
    doc = {"type": EVENT_TYPES[status], "timestamp": data[at_field], "data": data}

    def encoded(kept: int) -> bytes:
        data.update(outputs=outputs[:kept], outputs_total=len(outputs), outputs_truncated=kept < len(outputs))
        return _encode(doc)

    body = encoded(len(outputs))
    if len(body) <= MAX_PAYLOAD_BYTES:
        return body
    low, high = 0, len(outputs)  # the most outputs that fit: encoded(low) fits, encoded(high) does not
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if len(encoded(middle)) <= MAX_PAYLOAD_BYTES else (low, middle)
    return encoded(low)
