"""MinIO's bucket-notification records, as its Kafka target writes them, decoded.

MinIO's ``notify_kafka`` target writes one JSON document per event (``internal/event/target/
kafka.go``): ``{"EventName", "Key": "<bucket>/<object>", "Records": [<event>]}``, keyed by
``<bucket>/<object>``. Each event follows the S3 notification structure; the object key in
``Records[].s3.object.key`` is escaped with Go's ``url.QueryEscape`` (``cmd/event-notification.go``:
a space becomes ``+``, ``+`` becomes ``%2B``, ``/`` becomes ``%2F``, non-ASCII its UTF-8
percent-escapes), so it is read back with ``unquote_plus``. Amazon S3 escapes keys the same way,
so records bridged from S3 decode too; the top-level ``Key`` is not needed and not trusted.

Only the fields darkroom uses are kept. What is not a notification of this shape is
``UndecodableEvent``: the loop sends such records to the dead-letter topic.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from streams.errors import UndecodableEvent

NEW_CONTENT = frozenset(
    {
        "s3:ObjectCreated:Put",
        "s3:ObjectCreated:Post",
        "s3:ObjectCreated:Copy",
        "s3:ObjectCreated:CompleteMultipartUpload",
    }
)
"""The ``s3:ObjectCreated:*`` events that write an object's bytes. MinIO also names tagging,
retention and legal-hold changes ``s3:ObjectCreated:PutTagging`` etc.: they change no byte,
so they start no work."""


@dataclass(frozen=True)
class ObjectEvent:
    """One record of a notification: what happened to which object."""

    name: str
    """``eventName``, e.g. ``s3:ObjectCreated:Put``."""
    bucket: str
    key: str
    """The object key as stored (unescaped)."""
    etag: str
    """Empty for removals (MinIO omits it)."""
    sequencer: str
    """MinIO: the event time in hexadecimal nanoseconds; the same when a queued event is replayed."""
    time: datetime
    size: int = 0
    content_type: str = ""
    user_metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def writes_content(self) -> bool:
        return self.name in NEW_CONTENT


def decode(value: bytes | None) -> list[ObjectEvent]:
    """The object events of one notification record; ``UndecodableEvent`` if it is not one."""
    try:
        doc = json.loads(value or b"")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UndecodableEvent(f"not a bucket notification: not JSON ({exc})") from None
    records = doc.get("Records") if isinstance(doc, dict) else None
    if not isinstance(records, list) or not records:
        raise UndecodableEvent("not a bucket notification: no Records list")
    return [_record(r, i) for i, r in enumerate(records)]


def _record(record: Any, index: int) -> ObjectEvent:
    try:
        obj = record["s3"]["object"]
        name, bucket, escaped = record["eventName"], record["s3"]["bucket"]["name"], obj["key"]
        etag, sequencer, size = obj.get("eTag", ""), obj.get("sequencer", ""), obj.get("size", 0)
        content_type, metadata = obj.get("contentType", ""), obj.get("userMetadata") or {}
        when = datetime.fromisoformat(record["eventTime"])
        if not all(isinstance(v, str) for v in (name, bucket, escaped, etag, sequencer, content_type)):
            raise TypeError("a field that should be a string is not")
        if not bucket or not escaped or not isinstance(size, int) or not isinstance(metadata, dict):
            raise ValueError("empty bucket or key, or a size or userMetadata of the wrong type")
        key = unquote_plus(escaped, errors="strict")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # UnicodeDecodeError is a ValueError
        raise UndecodableEvent(f"not a bucket notification: Records[{index}]: {type(exc).__name__}: {exc}") from None
    return ObjectEvent(
        name=name,
        bucket=bucket,
        key=key,
        etag=etag.strip('"'),
        sequencer=sequencer,
        time=when if when.tzinfo else when.replace(tzinfo=UTC),
        size=size,
        content_type=content_type,
        user_metadata={str(k): str(v) for k, v in metadata.items()},
    )
