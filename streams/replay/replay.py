"""Re-emitting selected uploads as new upload events, resumably.

A replayed upload is a new upload: its event id is derived from the original's and the
replay's id (so a resumed replay re-derives the same ids), ``replay_of`` names the
original upload (the first one, for a replay of a replay), ``submitted_at`` is now, and
``force`` / ``notify`` / a new pipeline travel with it through every step to the sinks.
Without ``force`` and with the same pipeline, versions and models, every step finds its
finished outputs under the same keys and reuses them: nothing is computed again.

A replay's selection and options are saved once in ``$DARKROOM_HOME/replays/<id>.json``,
and how many it emitted in ``<id>.progress`` after every delivered batch, so an
interrupted replay resumes where it stopped without emitting any upload twice.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from processors.errors import ConfigurationError, InvalidPipeline
from streams.config import Settings
from streams.replay.select import Found
from streams.runtime.kafka import Record
from streams.runtime.sender import Sender
from streams.runtime.topics import UPLOADED
from streams.wire import pipeline as pipelines
from streams.wire.events import Serdes, UploadEvent, derived_id, now, upload_event

BATCH = 500
"""Uploads per delivery wait and saved progress."""


@dataclass(frozen=True, kw_only=True)
class ReplayOptions:
    pipeline: list[pipelines.Step] | None = None
    """Steps to run instead of each upload's own (after a model upgrade, say)."""
    force: bool = False
    """Recompute where finished outputs exist (objects are still never replaced)."""
    notify: bool = True
    """False: the new results send no webhooks."""
    rate: float | None = None
    """Most uploads emitted per second."""


@dataclass
class ReplayState:
    """What ``--resume`` needs; saved as JSON after every delivered batch."""

    replay_id: str
    options: ReplayOptions
    uploads: list[UploadEvent]
    emitted: int = 0
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def done(self) -> bool:
        return self.emitted >= len(self.uploads)


def new_state(found: Sequence[Found], options: ReplayOptions) -> ReplayState:
    """A replay of ``found`` with a fresh id (what the event ids are derived from)."""
    return ReplayState(f"rp-{uuid.uuid4().hex[:12]}", options, [f.upload for f in found])


def replayed_event_id(upload: UploadEvent, replay_id: str) -> str:
    """The event id ``upload`` gets in replay ``replay_id``: the same whenever it is derived again."""
    return derived_id(upload["event_id"], f"replay/{replay_id}")


def replayed(upload: UploadEvent, replay_id: str, options: ReplayOptions) -> UploadEvent:
    """The new upload event that re-drives ``upload`` in replay ``replay_id``: the original's
    image, object, tenant, callback and idempotency key, submitted now."""
    return upload_event(
        event_id=replayed_event_id(upload, replay_id),
        image_id=upload["image_id"],
        bucket=upload["bucket"],
        key=upload["key"],
        pipeline=options.pipeline if options.pipeline is not None else upload["pipeline"],
        preset=None if options.pipeline is not None else upload.get("preset"),
        callback_url=upload.get("callback_url"),
        tenant=upload.get("tenant"),
        idempotency_key=upload.get("idempotency_key"),
        submitted_at=now(),
        replay_of=upload.get("replay_of") or upload["event_id"],
        force=options.force,
        notify=options.notify,
    )


def state_path(settings: Settings, replay_id: str) -> Path:
    """The replay's selection and options (written once); its progress sits beside it."""
    return settings.home / "replays" / f"{replay_id}.json"


def _write(path: Path, text: str) -> None:
    """Atomically: a crash mid-write keeps the previous content."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def save(settings: Settings, state: ReplayState) -> None:
    """Save the progress (a few bytes per batch); the selection only the first time."""
    path = state_path(settings, state.replay_id)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {**asdict(state), "uploads": [_jsonable(u) for u in state.uploads]}
        del doc["emitted"]
        _write(path, json.dumps(doc))
    _write(path.with_suffix(".progress"), str(state.emitted))


def load(settings: Settings, replay_id: str) -> ReplayState:
    if not re.fullmatch(r"rp-[0-9a-f]{12}", replay_id):
        raise ConfigurationError(f"{replay_id!r} is not a replay id (rp- and 12 hex digits)")
    path = state_path(settings, replay_id)
    try:
        doc = json.loads(path.read_text())
        emitted = int(path.with_suffix(".progress").read_text())
    except FileNotFoundError:
        raise ConfigurationError(f"no replay {replay_id} in {path.parent}") from None
    except (ValueError, OSError) as exc:
        raise ConfigurationError(
            f"replay {replay_id}'s state in {path.parent} is unreadable ({type(exc).__name__})"
        ) from None
    uploads = [
        upload_event(**{**u, "submitted_at": datetime.fromtimestamp(u["submitted_at"] / 1000, UTC)})
        for u in doc["uploads"]
    ]
    return ReplayState(doc["replay_id"], ReplayOptions(**doc["options"]), uploads, emitted, doc["created_at"])


def _jsonable(upload: UploadEvent) -> dict[str, Any]:
    return {**upload, "submitted_at": int(upload["submitted_at"].timestamp() * 1000)}


def run(
    settings: Settings,
    state: ReplayState,
    *,
    stop: threading.Event | None = None,
    progress: Callable[[int], None] | None = None,
) -> ReplayState:
    """Emit the uploads ``state`` has not emitted yet, saving progress after every batch.

    Returns when all are emitted or ``stop`` is set (between batches: what was delivered
    is saved, so ``run`` on the loaded state later continues without repeating any).
    ``progress`` gets the number emitted so far after every batch.
    """
    topic = settings.topic(UPLOADED)
    serde = Serdes(settings).upload
    sender = Sender(settings)
    started, first = time.monotonic(), state.emitted
    save(settings, state)
    while not state.done and not (stop is not None and stop.is_set()):
        size = BATCH if state.options.rate is None else max(1, min(BATCH, int(state.options.rate)))
        batch = state.uploads[state.emitted : state.emitted + size]
        events = [replayed(u, state.replay_id, state.options) for u in batch]
        sender.send([Record(topic, e["image_id"], serde.encode(e, topic)) for e in events], "a replayed upload")
        state.emitted += len(batch)
        save(settings, state)
        if progress is not None:
            progress(state.emitted)
        if state.options.rate:
            _pace(started, state.emitted - first, state.options.rate, stop)
    return state


def _pace(started: float, emitted: int, rate: float, stop: threading.Event | None) -> None:
    """Sleep until ``emitted`` uploads are within ``rate`` per second since ``started``."""
    ahead = emitted / rate - (time.monotonic() - started)
    if ahead > 0:
        (stop or threading.Event()).wait(ahead)


def summary(found: Sequence[Found], options: ReplayOptions, sample: int = 5) -> dict[str, Any]:
    """Counts, a sample and the work a replay of ``found`` would start (the dry run's answer)."""
    by_pipeline: dict[str, int] = {}
    steps = 0
    for f in found:
        try:
            chosen = options.pipeline or pipelines.resolve(f.upload["pipeline"], f.upload.get("preset"))
        except InvalidPipeline:  # it will fail again at ingest, as it did
            chosen = []
        spec = pipelines.format_spec(chosen) if chosen else "(invalid pipeline)"
        by_pipeline[spec] = by_pipeline.get(spec, 0) + 1
        steps += len(chosen)
    return {
        "uploads": len(found),
        "images": len({f.upload["image_id"] for f in found}),
        "steps": steps,
        "by_pipeline": by_pipeline,
        "recompute": "every step (--force)" if options.force else "only steps without finished outputs",
        "webhooks": options.notify,
        "sample": [
            {
                "image_id": f.upload["image_id"],
                "upload_event_id": f.upload["event_id"],
                "record_time": datetime.fromtimestamp(f.timestamp_ms / 1000, UTC).isoformat(timespec="seconds"),
            }
            for f in found[:sample]
        ],
    }
