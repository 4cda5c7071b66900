"""``darkroom worker notifications``: MinIO bucket notifications in, upload events out.

Each notification record is decoded (``minio.decode``; anything else is dead-lettered by
the loop). A record naming new content under a key darkroom does not read (``check_key``:
a NUL, a backslash, a ``..`` segment…) is dead-lettered whole with ``invalid_object_key``
before anything is read: there is no image yet to fail. Otherwise each of its object
events is handled on its own:

- an event that writes no new bytes (a removal, tagging, an access…) starts nothing;
- nor does an object under ``DARKROOM_OUTPUT_PREFIX``: darkroom's own outputs land in the
  watched bucket, and must not start work on themselves (no loops);
- an upload of an image the HTTP API created (``uploads/<image id>/…`` with an order the
  API wrote beside it, ``api_order_key``) becomes that image's upload, as the API's
  ``start`` would emit it (same event id), whatever the rules say;
- an object no rule takes is logged and skipped;
- any other becomes an upload event on ``images.uploaded``, which ingest checks as it
  checks every upload (an oversized object fails there with ``file_too_large``).

Ids make duplicates harmless. The image id is a hash of bucket and key, so an overwritten
object is a new upload of the same image; the event id is derived from bucket, key, eTag and
sequencer, and ``submitted_at`` is the event's time, so a notification MinIO delivers twice
(it replays its queue after reconnecting) yields the same upload event, byte for byte, and
the pipeline's idempotency turns it into one result.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from functools import partial
from typing import Any

from processors.errors import ConfigurationError
from streams.config import PREFIX, Settings
from streams.notifications import minio, rules
from streams.runtime.kafka import Record
from streams.runtime.retry import retry
from streams.runtime.storage import ObjectStore, Store
from streams.runtime.topics import UPLOADED
from streams.runtime.worker import Event, WorkerSpec
from streams.wire.events import (
    Serdes,
    UploadEvent,
    api_order,
    check_key,
    derived_id,
    idempotent_event_id,
    upload_event,
)


def image_id(bucket: str, key: str) -> str:
    """The image an object is: the same for every version of it, a valid image id for any key."""
    return "obj-" + hashlib.sha256(f"{bucket}/{key}".encode()).hexdigest()[:32]


def event_id(obj: minio.ObjectEvent) -> str:
    """One id per version of the object's content: the same when its notification comes again."""
    return derived_id("notification", json.dumps([obj.bucket, obj.key, obj.etag, obj.sequencer]))


def upload(obj: minio.ObjectEvent, rule: rules.Rule) -> UploadEvent:
    """The upload event of a stored object, as ``rule`` says."""
    return upload_event(
        event_id=event_id(obj),
        image_id=image_id(obj.bucket, obj.key),
        bucket=obj.bucket,
        key=obj.key,
        pipeline=rule.steps,
        preset=rule.preset,
        callback_url=rule.callback_url,
        tenant=rule.tenant,
        submitted_at=obj.time,
    )


def ordered_upload(obj: minio.ObjectEvent, order: dict[str, Any]) -> UploadEvent:
    """The upload event of an image the HTTP API created, as its ``start`` emits it."""
    idempotency_key = f"api/{order['image_id']}"
    return upload_event(
        event_id=idempotent_event_id(order["tenant"], idempotency_key),
        image_id=order["image_id"],
        bucket=obj.bucket,
        key=obj.key,
        pipeline=order["pipeline"],
        callback_url=order["callback_url"],
        tenant=order["tenant"],
        idempotency_key=idempotency_key,
        submitted_at=obj.time,
    )


def decode(value: bytes | None, _topic: str) -> Event:
    return {"objects": minio.decode(value)}


class Notifications:
    """The handler: one notification record → the upload events its objects make."""

    def __init__(self, settings: Settings, ruleset: Sequence[rules.Rule], serdes: Serdes, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.rules = tuple(ruleset)
        self.serdes = serdes
        self.topic = settings.topic(UPLOADED)
        self.outputs = settings.output_prefix.strip("/") + "/"

    def __call__(self, event: Event, log: Any) -> list[Record]:
        for obj in event["objects"]:
            if obj.writes_content:
                check_key(obj.key)  # InvalidObjectKey: the loop dead-letters the record with its code
        records = []
        for obj in event["objects"]:
            about = log.bind(notification=obj.name, bucket=obj.bucket, key=obj.key)
            if not obj.writes_content:
                about.debug("notification ignored: no new content")
                continue
            if obj.key.startswith(self.outputs):
                about.debug("notification ignored: darkroom's own output")
                continue
            order = self._order(obj)
            if order is not None:
                made = ordered_upload(obj, order)
            elif (rule := rules.match(self.rules, obj.bucket, obj.key)) is not None:
                made = upload(obj, rule)
            else:
                about.info("notification ignored: no rule matches")
                continue
            about.info("upload made from notification", image_id=made["image_id"], event_id=made["event_id"])
            records.append(Record(self.topic, made["image_id"], self.serdes.upload.encode(made, self.topic)))
        return records

    def _order(self, obj: minio.ObjectEvent) -> dict[str, Any] | None:
        """The HTTP API's order for this object, if the API created its image (else None).
        The store not answering is an outage: the loop pauses and asks again."""
        parts = obj.key.split("/")
        s = self.settings
        if len(parts) < 3 or parts[0] != "uploads" or obj.bucket != s.bucket:
            return None  # the API keeps its uploads and orders in DARKROOM_BUCKET only

        def read(key: str) -> bytes:
            get = partial(self.store.get, obj.bucket, key, max_bytes=64 * 1024)
            data: bytes = retry(get, attempts=s.storage_attempts, backoff_s=s.storage_backoff_s, what="read an order")
            return data

        order = api_order(read, s.output_prefix, parts[1])
        return order if order is not None and order.get("key") == obj.key else None


def notifications_spec(settings: Settings, serdes: Serdes | None = None) -> WorkerSpec[Event]:
    """The notifications worker; its rules are loaded and checked here (``ConfigurationError``)."""
    if not settings.notifications_topic:
        raise ConfigurationError(f"{PREFIX}NOTIFICATIONS_TOPIC is not set: no topic to read notifications from")
    handler = Notifications(settings, rules.load(settings), serdes or Serdes(settings), ObjectStore(settings))
    return WorkerSpec(
        name="notifications",
        group_id=settings.topic("darkroom.notifications"),
        topics=(settings.notifications_topic,),
        decode=decode,
        handle=handler,
    )
