"""Selecting uploads to replay: from the upload topic, by record time, image, tenant and outcome.

The upload topic is the source of truth for what was asked: every selection reads it,
filtering by the record's timestamp (``--since``/``--until``: the broker's time lookup is
only where reading starts, since the embedded broker answers 0), by key (image id) before
decoding, then by tenant. Outcome filters (``--failed``, ``--status``, ``--error-code``)
ask the result store which uploads they name — the upload behind each image's stored
final state — and select exactly those. Per image only the latest upload selected is
kept: re-emitting an older one after a newer one would bring the older request back.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from confluent_kafka import TopicPartition

from streams.config import Settings
from streams.errors import UndecodableEvent
from streams.runtime.kafka import make_admin
from streams.runtime.offsets import broker_errors, offsets_at, read_until_idle, reader_id, topic_partitions
from streams.runtime.topics import UPLOADED
from streams.sinks.database import Database
from streams.wire.events import Serdes, UploadEvent

Outcome = Literal["completed", "failed"]


@dataclass(frozen=True, kw_only=True)
class Selection:
    """Which uploads to replay; every filter given must hold (an empty selection is refused)."""

    since: datetime | None = None
    until: datetime | None = None
    """Record time on the upload topic, ``since <= t < until``."""
    image_ids: frozenset[str] = frozenset()
    tenant: str | None = None
    status: Outcome | None = None
    """The image's stored final state (the result store)."""
    error_code: str | None = None
    """Only failures with this code (implies ``status="failed"``)."""

    @property
    def empty(self) -> bool:
        return not (self.since or self.until or self.image_ids or self.tenant or self.status or self.error_code)


@dataclass(frozen=True)
class Found:
    """A selected upload: the event as the topic holds it, and where it is."""

    upload: UploadEvent
    timestamp_ms: int
    partition: int
    offset: int


@dataclass
class Selected:
    uploads: list[Found] = field(default_factory=list)
    scanned: int = 0
    """Records read from the upload topic."""
    undecodable: int = 0
    missing: list[str] = field(default_factory=list)
    """Image ids asked for (by id or by outcome) with no upload left on the topic (retention)."""


def _ms(when: datetime | None) -> int | None:
    return None if when is None else int(when.timestamp() * 1000)


def wanted_uploads(db: Database, selection: Selection) -> dict[str, str]:
    """Upload event id → image id for the outcome filters, from the stored final states."""
    status = "failed" if selection.error_code else selection.status
    clauses, params = ["status = ?"], [str(status)]
    if selection.error_code:
        clauses.append("error_code = ?")
        params.append(selection.error_code)
    if selection.tenant:
        clauses.append("tenant = ?")
        params.append(selection.tenant)
    if selection.image_ids:
        clauses.append(f"image_id IN ({', '.join('?' for _ in selection.image_ids)})")
        params.extend(sorted(selection.image_ids))
    with db.transaction() as tx:
        rows = tx.query(f"SELECT image_id, upload_event_id FROM results WHERE {' AND '.join(clauses)}", params)
    return {row["upload_event_id"]: row["image_id"] for row in rows}


def select(settings: Settings, selection: Selection, db: Database | None = None) -> Selected:
    """The uploads ``selection`` names, oldest first; outcome filters need ``db``."""
    if selection.empty:
        raise ValueError("an empty selection would replay every upload: give at least one filter")
    wanted: dict[str, str] | None = None
    if selection.status or selection.error_code:
        if db is None:
            raise ValueError("outcome filters need the result store")
        wanted = wanted_uploads(db, selection)
        if not wanted:
            return Selected()
    image_ids = frozenset(wanted.values()) if wanted is not None else selection.image_ids
    result = Selected()
    latest: dict[str, Found] = {}
    for found in _scan(settings, selection, image_ids, result):
        if wanted is not None and found.upload["event_id"] not in wanted:
            continue
        if selection.tenant and found.upload.get("tenant") != selection.tenant:
            continue
        image = found.upload["image_id"]
        if image not in latest or (found.timestamp_ms, found.offset) > (
            latest[image].timestamp_ms,
            latest[image].offset,
        ):
            latest[image] = found
    result.uploads = sorted(latest.values(), key=lambda f: (f.timestamp_ms, f.partition, f.offset))
    result.missing = sorted(image_ids - set(latest)) if image_ids else []
    return result


def _scan(settings: Settings, selection: Selection, image_ids: Collection[str], into: Selected) -> list[Found]:
    """Every upload record in the time range (and with one of ``image_ids`` as key, if given)."""
    topic = settings.topic(UPLOADED)
    since, until = _ms(selection.since), _ms(selection.until)
    serde = Serdes(settings).upload
    with broker_errors(f"cannot read {topic}"):
        partitions = topic_partitions(make_admin(settings)).get(topic, [])
        starts: dict[int, int | None] = (
            offsets_at(settings, topic, partitions, since) if since is not None else dict.fromkeys(partitions, 0)
        )
        positions = [TopicPartition(topic, p, start) for p, start in starts.items() if start is not None]
        keys = {k.encode() for k in image_ids}
        out: list[Found] = []
        for msg in read_until_idle(settings, positions, reader_id()):
            into.scanned += 1
            _, ts = msg.timestamp()
            if (since is not None and ts < since) or (until is not None and ts >= until):
                continue
            if keys and msg.key() not in keys:
                continue
            try:
                upload = serde.decode(msg.value(), topic)
            except UndecodableEvent:
                into.undecodable += 1
                continue
            out.append(Found(upload, ts, msg.partition() or 0, msg.offset() or 0))
        return out
