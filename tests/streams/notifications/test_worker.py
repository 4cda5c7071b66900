"""The notifications handler without a broker: which records become which upload events."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog

from processors.errors import ConfigurationError
from streams.config import Settings, load_settings
from streams.errors import InvalidObjectKey
from streams.notifications import rules, worker
from streams.runtime.topics import UPLOADED
from streams.services import build_supervisor
from streams.wire.events import IMAGE_ID, Serdes
from tests.fakes import MemoryStore
from tests.streams.notifications.samples import notification

RULES = [
    {"bucket": "darkroom", "prefix": "uploads/", "pipeline": "thumbnail:sizes=64", "tenant": "acme"},
    {"bucket": "darkroom", "prefix": "", "preset": "web"},
]


def _settings(tmp_path: Path, **overrides: str) -> Settings:
    """Settings naming an S3 server, which nothing here reaches: the handler reads no object."""
    return load_settings(
        environ={}, home=tmp_path, s3_endpoint="127.0.0.1:9", s3_access_key="k", s3_secret_key="s", **overrides
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return _settings(
        tmp_path, topic_prefix="t.", notifications_topic="minio-events", notification_rules=json.dumps(RULES)
    )


def _uploads(settings: Settings, *values: bytes) -> list[dict[str, Any]]:
    spec = worker.notifications_spec(settings)
    assert spec.handle is not None
    serdes = Serdes(settings)
    records = [r for value in values for r in spec.handle(spec.decode(value, "minio-events"), structlog.get_logger())]
    assert all(r.topic == "t." + UPLOADED for r in records)
    events = [serdes.upload.decode(r.value, r.topic) for r in records]
    assert [r.key for r in records] == [e["image_id"] for e in events]
    return events


def test_a_created_object_becomes_the_upload_its_rule_says(settings: Settings) -> None:
    key = "uploads/summer photos a+b 100% café.jpg"  # no deeper path: not an HTTP API upload, no order read
    (event,) = _uploads(settings, notification("darkroom", key, time="2026-11-30T10:00:00.123Z"))
    assert IMAGE_ID.fullmatch(event["image_id"])
    assert event["bucket"] == "darkroom" and event["key"] == key
    assert event["pipeline"] == [{"operation": "thumbnail", "params": {"sizes": "64"}}] and event["preset"] is None
    assert event["tenant"] == "acme" and event["callback_url"] is None
    assert event["submitted_at"] == datetime(2026, 11, 30, 10, 0, 0, 123000, tzinfo=UTC)
    (other,) = _uploads(settings, notification("darkroom", "elsewhere/a.png"))
    assert other["preset"] == "web" and other["pipeline"] == [] and other["tenant"] is None


def test_ids_make_a_repeated_notification_the_same_upload_and_an_overwrite_a_new_one(settings: Settings) -> None:
    first = notification("darkroom", "uploads/a b.jpg", etag="aa", sequencer="1")
    again = notification("darkroom", "uploads/a b.jpg", etag="aa", sequencer="1")
    overwrite = notification("darkroom", "uploads/a b.jpg", etag="bb", sequencer="2")
    same_bytes_again = notification("darkroom", "uploads/a b.jpg", etag="bb", sequencer="3")
    elsewhere = notification("darkroom", "uploads/a+b.jpg", etag="aa", sequencer="1")
    a, b, c, d, e = _uploads(settings, first, again, overwrite, same_bytes_again, elsewhere)
    assert a == b  # byte for byte the same upload event, submitted_at included
    assert len({a["event_id"], c["event_id"], d["event_id"], e["event_id"]}) == 4
    assert a["image_id"] == c["image_id"] == d["image_id"] != e["image_id"]


@pytest.mark.parametrize(
    "value",
    [
        notification("darkroom", "derived/obj-1/0-thumbnail-abc/256.webp"),  # darkroom's own output
        notification("darkroom", "uploads/a.jpg", event="s3:ObjectRemoved:Delete"),
        notification("darkroom", "uploads/a.jpg", event="s3:ObjectCreated:PutTagging"),
        notification("darkroom", "uploads/a.jpg", event="s3:ObjectAccessed:Get"),
        notification("photos", "uploads/a.jpg"),  # no rule for the bucket
    ],
)
def test_outputs_removals_and_unmatched_objects_start_nothing(settings: Settings, value: bytes) -> None:
    assert _uploads(settings, value) == []


def test_run_builds_the_worker_on_the_configured_topic(settings: Settings) -> None:
    (service,) = build_supervisor(settings, ["notifications"]).services
    spec = service.spec  # type: ignore[attr-defined]
    assert (spec.name, spec.topics, spec.group_id) == ("notifications", ("minio-events",), "t.darkroom.notifications")


def test_the_worker_needs_a_topic_and_good_rules(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="DARKROOM_NOTIFICATIONS_TOPIC is not set"):
        worker.notifications_spec(_settings(tmp_path, notification_rules=json.dumps(RULES)))
    bad = _settings(tmp_path, notifications_topic="minio-events", notification_rules='[{"bucket": "x"}]')
    with pytest.raises(ConfigurationError, match="rule 1"):
        build_supervisor(bad, ["notifications"])


@pytest.mark.parametrize(
    "key",
    ["uploads/x\\..\\y/photo.png", "uploads/x\x00y.png", "incoming/../uploads/a/b.jpg", "incoming/" + "k" * 1017],
)
def test_a_notification_naming_a_key_darkroom_does_not_read_is_refused_before_any_read(
    settings: Settings, key: str
) -> None:
    """The handler raises ``InvalidObjectKey``, which the loop dead-letters with its code (there
    is no image yet to fail). Before, ``uploads/x\\..\\y/…`` made the store answer
    ``InvalidRequest`` to the order's read, an outage that stalled the worker."""
    store = MemoryStore()
    handler = worker.Notifications(settings, rules.load(settings), Serdes(settings), store)
    good = notification("darkroom", "uploads/a/b.jpg")
    with pytest.raises(InvalidObjectKey) as info:
        handler(worker.decode(_two(good, notification("darkroom", key)), "minio-events"), structlog.get_logger())
    assert info.value.code == "invalid_object_key"
    assert store.calls == []  # nothing read, not even for the good object of the same record
    removed = notification("darkroom", key, event="s3:ObjectRemoved:Delete")  # no new content: nothing to refuse
    assert handler(worker.decode(removed, "minio-events"), structlog.get_logger()) == []


def _two(first: bytes, second: bytes) -> bytes:
    """One notification record carrying the object events of two."""
    record = json.loads(first)
    record["Records"] += json.loads(second)["Records"]
    return json.dumps(record).encode()
