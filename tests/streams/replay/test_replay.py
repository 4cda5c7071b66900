"""Replay on the embedded stack: what is selected, what is computed again, what the sinks see.

Selection by time uses records produced with explicit timestamps. The pipeline runs in
this process with the thumbnail operation's ``run`` counted, so "computes nothing" is a
count of real invocations, not a flag the code under test reports about itself.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from streams.client import Client, FinalEvent, Submission
from streams.config import Settings
from streams.dev.samples import photo_jpeg
from streams.handlers.steps import OperationStep, worker_specs
from streams.replay import replay
from streams.replay.select import Selection, select
from streams.runtime.storage import ObjectStore
from streams.runtime.supervisor import Supervisor
from streams.runtime.topics import UPLOADED
from streams.sinks import outbox
from streams.sinks.database import Database
from streams.sinks.results import get_result, results_spec
from streams.wire.events import Serdes
from tests.helpers import read_topic
from tests.streams.cli.test_cli import darkroom

pytestmark = pytest.mark.integration


def _upload(settings: Settings, image_id: str, event_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "image_id": image_id,
        "bucket": settings.bucket,
        "key": f"uploads/{image_id}/a.jpg",
        "pipeline": [{"operation": "thumbnail", "params": {"sizes": "64"}}],
        "submitted_at": datetime.now(UTC),
        **extra,
    }


def test_a_time_range_selects_exactly_the_records_inside_it_and_the_latest_upload_per_image(
    settings: Settings,
) -> None:
    serde, topic = Serdes(settings).upload, settings.topic(UPLOADED)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers()})
    for minute in range(10):  # image i{minute}, record time t0 + minute
        event = _upload(settings, f"i{minute}", f"e{minute}", tenant="acme" if minute % 2 else "other")
        ts = int((t0 + timedelta(minutes=minute)).timestamp() * 1000)
        producer.produce(topic, serde.encode(event, topic), key=f"i{minute}", timestamp=ts)
    newer = _upload(settings, "i4", "e4-again")  # a second upload of i4, still inside the range
    producer.produce(
        topic,
        serde.encode(newer, topic),
        key="i4",
        timestamp=int((t0 + timedelta(minutes=6, seconds=30)).timestamp() * 1000),
    )
    assert producer.flush(30) == 0

    inside = Selection(since=t0 + timedelta(minutes=3), until=t0 + timedelta(minutes=7))
    found = select(settings, inside)
    assert [f.upload["event_id"] for f in found.uploads] == ["e3", "e5", "e6", "e4-again"]
    assert found.scanned >= 4  # from the first record at or after since (the lookup, checked by reading)
    assert [f.upload["image_id"] for f in select(settings, dataclasses.replace(inside, tenant="acme")).uploads] == [
        "i3",
        "i5",
    ]
    assert select(settings, Selection(since=t0 + timedelta(hours=1))).uploads == []
    everything = select(settings, Selection(until=t0 + timedelta(hours=1)))
    assert len(everything.uploads) == 10
    by_id = select(settings, Selection(image_ids=frozenset({"i1", "i9", "nope"})))
    assert sorted(f.upload["image_id"] for f in by_id.uploads) == ["i1", "i9"] and by_id.missing == ["nope"]


@dataclasses.dataclass
class Pipeline:
    settings: Settings
    db: Database
    runs: list[str]
    """Image ids the thumbnail operation really ran for."""


@pytest.fixture
def pipeline(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pipeline]:
    settings = settings.replace(database_url=f"sqlite:///{tmp_path / 'results.sqlite3'}")
    db = Database(settings)
    db.migrate()
    outbox.Outbox(db).subscribe("acme", "http://127.0.0.1:9/never-called", ["image.completed", "image.failed"])
    ingest, thumbnail = worker_specs(settings, ["ingest", "thumbnail"])
    step = thumbnail.handle
    assert isinstance(step, OperationStep)
    runs: list[str] = []
    original = step.operation.run

    def counted(data: bytes, params: Any, limits: Any) -> Any:
        runs.append(threading.current_thread().name)
        return original(data, params, limits)

    monkeypatch.setattr(step.operation, "run", counted)
    sink_db = Database(settings)
    supervisor = Supervisor(
        settings,
        [ingest, thumbnail, results_spec(settings, Serdes(settings), sink_db, outbox.enqueue)],
        resources=[sink_db],
    )
    supervisor.start()
    try:
        yield Pipeline(settings, db, runs)
    finally:
        supervisor.stop.set()
        supervisor.join(30)
        db.close()


def _replay(p: Pipeline, selection: Selection, **options: Any) -> tuple[replay.ReplayState, dict[str, FinalEvent]]:
    """Select, replay, and wait for every replayed upload's final event."""
    found = select(p.settings, selection, p.db).uploads
    state = replay.run(p.settings, replay.new_state(found, replay.ReplayOptions(**options)))
    subs = [
        Submission(u["image_id"], replay.replayed_event_id(u, state.replay_id), u["bucket"], u["key"], [])
        for u in state.uploads
    ]
    with Client(p.settings) as client:
        finals = client.wait(subs, timeout_s=90)
    assert len(finals) == len(subs)
    _wait_for_rows(p.db, {s.image_id: s.event_id for s in subs})
    return state, finals


def _wait_for_rows(db: Database, upload_event_ids: dict[str, str]) -> None:
    deadline = time.monotonic() + 30
    while any((get_result(db, i) or {}).get("upload_event_id") != e for i, e in upload_event_ids.items()):
        assert time.monotonic() < deadline, "the result writer did not record the replay"
        time.sleep(0.2)


def _deliveries(db: Database, webhook_id: str) -> int:
    with db.transaction() as tx:
        return len(tx.query("SELECT target FROM webhook_deliveries WHERE webhook_id = ?", (webhook_id,)))


def test_replays_reuse_recompute_and_re_drive_exactly_what_they_say(pipeline: Pipeline, store: ObjectStore) -> None:
    p = pipeline
    with Client(p.settings, store) as client:
        subs = [
            client.submit(
                photo_jpeg(320, 240, seed=i), f"p{i}.jpg", "thumbnail:sizes=64", image_id=f"g{i}", tenant="acme"
            )
            for i in range(3)
        ]
        bad = client.submit(b"not an image at all", "bad.jpg", "thumbnail:sizes=64", image_id="bad", tenant="acme")
        finals = client.wait([*subs, bad], timeout_s=90)
    _wait_for_rows(p.db, {s.image_id: s.event_id for s in [*subs, bad]})
    assert finals["bad"].status == "failed" and len(p.runs) == 3 + 1  # the bad one reached the operation
    rows_before = {s.image_id: get_result(p.db, s.image_id) for s in subs}

    # --failed re-drives exactly the failed image, with its own pipeline.
    state, replayed = _replay(p, Selection(status="failed"))
    assert [u["image_id"] for u in state.uploads] == ["bad"]
    assert replayed["bad"].status == "failed" and replayed["bad"].event["replay_of"] == bad.event_id
    assert get_result(p.db, "bad")["final_event_id"] == replayed["bad"].event["event_id"]  # type: ignore[index]

    # Same pipeline, no --force: nothing runs, the outputs stay, the results are new.
    runs = len(p.runs)
    state, replayed = _replay(p, Selection(image_ids=frozenset({"g0", "g1"})))
    assert len(p.runs) == runs
    for image in ("g0", "g1"):
        row = get_result(p.db, image)
        assert row is not None and row["final_event_id"] == replayed[image].event["event_id"]
        assert row["outputs"] == rows_before[image]["outputs"]  # type: ignore[index]
        assert all(t["reused"] for t in replayed[image].event["timings"])
        assert _deliveries(p.db, row["final_event_id"]) == 1  # subscribers hear of the new result

    # Another pipeline: it runs, new keys, the row records the newer result.
    state, replayed = _replay(
        p, Selection(image_ids=frozenset({"g0"})), pipeline=[{"operation": "thumbnail", "params": {"sizes": "48"}}]
    )
    assert len(p.runs) == runs + 1
    row = get_result(p.db, "g0")
    assert row is not None and [o["width"] for o in row["outputs"]] == [48]
    assert {o["key"] for o in row["outputs"]}.isdisjoint({o["key"] for o in rows_before["g0"]["outputs"]})  # type: ignore[index]

    # --force recomputes; the objects under the same keys are kept, not replaced.
    state, replayed = _replay(p, Selection(image_ids=frozenset({"g1"})), force=True)
    assert len(p.runs) == runs + 2
    row = get_result(p.db, "g1")
    assert row is not None and row["outputs"] == rows_before["g1"]["outputs"]  # type: ignore[index]
    assert not any(t["reused"] for t in replayed["g1"].event["timings"])
    for output in row["outputs"]:
        assert store.stat(output["bucket"], output["key"]).metadata["darkroom-sha256"] == output["sha256"]

    # --no-notify: a new result, no webhook queued for it.
    state, replayed = _replay(p, Selection(image_ids=frozenset({"g2"})), notify=False)
    assert _deliveries(p.db, replayed["g2"].event["event_id"]) == 0
    assert get_result(p.db, "g2")["final_event_id"] == replayed["g2"].event["event_id"]  # type: ignore[index]


def test_an_interrupted_replay_resumes_without_emitting_any_upload_twice(settings: Settings) -> None:
    serde, topic = Serdes(settings).upload, settings.topic(UPLOADED)
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers()})
    for i in range(6):
        producer.produce(topic, serde.encode(_upload(settings, f"r{i}", f"orig-{i}"), topic), key=f"r{i}")
    assert producer.flush(30) == 0
    found = select(settings, Selection(image_ids=frozenset(f"r{i}" for i in range(6)))).uploads
    state = replay.new_state(found, replay.ReplayOptions(rate=2))  # batches of 2
    stop = threading.Event()
    replay.run(settings, state, stop=stop, progress=lambda emitted: stop.set())  # "Ctrl-C" after the first batch
    assert state.emitted == 2 and not state.done

    resumed = replay.load(settings, state.replay_id)
    assert resumed.emitted == 2
    replay.run(settings, resumed)
    assert resumed.done
    records = [serde.decode(r.value, topic) for r in read_topic(settings, topic, expect=12)]
    replays = [r for r in records if r["replay_of"]]
    assert sorted(r["replay_of"] for r in replays) == sorted(f"orig-{i}" for i in range(6))
    # the README's formula, derived here rather than by the code under test
    namespace = uuid.UUID("6f1d9a52-4d2e-4f0e-9a43-6d61726b726f")
    assert sorted(r["event_id"] for r in replays) == sorted(
        str(uuid.uuid5(namespace, f"orig-{i}/replay/{state.replay_id}")) for i in range(6)
    )


def test_the_cli_dry_run_changes_nothing_and_a_replay_reports_json(settings: Settings, tmp_path: Path) -> None:
    serde, topic = Serdes(settings).upload, settings.topic(UPLOADED)
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers()})
    producer.produce(topic, serde.encode(_upload(settings, "c1", "orig-c1"), topic), key="c1")
    assert producer.flush(30) == 0
    env = {**settings.to_env(), "DARKROOM_HOME": str(tmp_path)}
    before = len(read_topic(settings, topic, expect=1))

    dry = darkroom("replay", "--image-id", "c1", "--dry-run", "--json", env=env)
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert (plan["dry_run"], plan["uploads"], plan["steps"], plan["by_pipeline"]) == (
        True,
        1,
        1,
        {"thumbnail:sizes=64": 1},
    )
    assert len(read_topic(settings, topic, idle_s=1.0)) == before

    done = darkroom("replay", "--image-id", "c1", "--json", env=env)
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    assert (outcome["emitted"], outcome["selected"]) == (1, 1)
    assert len(read_topic(settings, topic, expect=before + 1)) == before + 1
    again = darkroom("replay", "--resume", outcome["replay_id"], env=env)
    assert again.returncode == 2 and "already emitted all 1" in again.stderr

    nothing = darkroom("replay", env=env)
    assert nothing.returncode == 2 and "replay needs a selection" in nothing.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--resume", "rp-0123456789ab", "--dry-run"], "drop --dry-run"),
        (["--resume", "../../etc/passwd"], "is not a replay id"),
        (["--resume", "rp-0123456789ab"], "no replay rp-0123456789ab"),
        (["--image-id", "x", "--rate", "nan"], "--rate must be a number > 0"),
        (["--since", "2026-11-30T12:00", "--until", "2026-11-30T11:00"], "--since must be before --until"),
        (["--since", "yesterday"], "expected ISO 8601 or a duration"),
    ],
)
def test_replay_usage_errors_are_one_line(tmp_path: Path, args: list[str], says: str) -> None:
    result = darkroom("replay", *args, env={"DARKROOM_HOME": str(tmp_path)})
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and says in result.stderr
    assert "Traceback" not in result.stderr
