"""No silent stalls: the object store and the broker killed outright under a running pipeline.

The stack is the embedded default (tansu keeping its log and the groups' offsets in the
SeaweedFS it runs beside), started for this module alone so the faults reach no other
test. Every kill is a real SIGKILL; every restart is ``Stack.up`` as ``darkroom stack up``
does it.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import closing

import pytest
import structlog.testing

from processors.errors import DarkroomError
from streams.client import Client, Submission
from streams.config import Settings, load_settings
from streams.dev.samples import photo_jpeg
from streams.dev.stack import Stack, throwaway_settings
from streams.runtime.offsets import committed_lag
from streams.runtime.topics import COMPLETED, FAILED, UPLOADED, ensure_topics, step_topic
from streams.services import build_supervisor
from streams.sinks.database import Database

pytestmark = pytest.mark.integration
SPEC = "thumbnail:sizes=48+480"


@pytest.fixture
def killable(tmp_path_factory: pytest.TempPathFactory, postgres_url: str) -> Iterator[tuple[Settings, Stack]]:
    home = tmp_path_factory.mktemp("stall-home")
    base = load_settings(
        home=home,
        session_timeout_ms=6000,
        log_format="json",
        database_url=postgres_url,
        storage_attempts=2,
        storage_backoff_s=0.05,
        retry_backoff_s=0.3,
        retry_max_backoff_s=2.0,
        stuck_after_s=20.0,
        partitions=4,
    )
    settings = throwaway_settings(base, home)
    stack = Stack(settings)
    stack.up()
    try:
        ensure_topics(settings)
        yield settings, stack
    finally:
        stack.down()


def _submit(client: Client, n: int, every_s: float, subs: list[Submission], stop: threading.Event) -> None:
    """``n`` uploads, one every ``every_s``; each retried while the store or the broker is
    down, until ``stop`` is set (the test gave up)."""
    for i in range(n):
        while not stop.is_set():
            try:
                subs.append(client.submit(photo_jpeg(320, 240, seed=i), f"k{i}.jpg", SPEC))
                break
            except DarkroomError:
                time.sleep(0.5)
        time.sleep(every_s)


def _rows(settings: Settings) -> dict[str, list[str]]:
    with closing(Database(settings)) as db, db.transaction() as tx:
        rows = tx.query("SELECT image_id, status FROM results")
    found: dict[str, list[str]] = {}
    for row in rows:
        found.setdefault(row["image_id"], []).append(row["status"])
    return found


def test_the_pipeline_survives_the_store_and_the_broker_killed_outright(killable: tuple[Settings, Stack]) -> None:
    """Uploads flow while the object store is SIGKILLed and left dead past a session
    timeout (the broker, whose log it holds, stops answering too), then the broker is
    SIGKILLed; each comes back with ``Stack.up``. Every upload must end in exactly one
    result, every group at lag 0, and nothing may crash."""
    settings, stack = killable
    supervisor = build_supervisor(settings, ["ingest", "thumbnail", "results"])
    client = Client(settings)
    subs: list[Submission] = []
    stop_feeding = threading.Event()
    with structlog.testing.capture_logs() as logs:
        supervisor.start()
        feeder = threading.Thread(target=_submit, args=(client, 40, 0.4, subs, stop_feeding), daemon=True)
        try:
            warm = client.submit(photo_jpeg(320, 240, seed=99), "w.jpg", SPEC)
            assert client.wait([warm], timeout_s=60), "the pipeline never started"
            feeder.start()
            time.sleep(3)
            os.kill(stack._state()["weed"], signal.SIGKILL)
            time.sleep(10)  # longer than the session timeout
            stack.up()
            time.sleep(4)
            os.kill(stack._state()["tansu"], signal.SIGKILL)
            time.sleep(5)
            stack.up()
            feeder.join(180)
            assert len(subs) == 40
            wanted = {s.image_id for s in [warm, *subs]}
            rows: dict[str, list[str]] = {}
            deadline = time.monotonic() + 150
            while not wanted <= set(rows) and time.monotonic() < deadline:
                time.sleep(1)
                rows = _rows(settings)
        finally:
            stop_feeding.set()
            supervisor.stop.set()
            supervisor.join(60)
    missing = wanted - set(rows)
    assert not missing, f"{len(missing)} of {len(wanted)} never finished\n" + _diagnosis(settings, logs, missing)
    assert {i: rows[i] for i in wanted} == {i: ["completed"] for i in wanted}
    groups = {"ingest": [UPLOADED], "thumbnail": [step_topic("thumbnail")], "results": [COMPLETED, FAILED]}
    for name, topics in groups.items():
        lag = committed_lag(settings, settings.topic(f"darkroom.{name}"), [settings.topic(t) for t in topics])
        assert lag == 0, f"{name} has lag {lag}"
    assert [e for e in logs if "exc_info" in e or e.get("log_level") == "critical"] == []


def _diagnosis(settings: Settings, logs: list[dict[str, object]], missing: set[str]) -> str:
    """What a failure needs to be understood: each group's lag now, the missing images' log
    lines and every pause, resume and rebuild the workers logged."""
    groups = {"ingest": [UPLOADED], "thumbnail": [step_topic("thumbnail")], "results": [COMPLETED, FAILED]}
    lags = {
        name: committed_lag(settings, settings.topic(f"darkroom.{name}"), [settings.topic(t) for t in topics])
        for name, topics in groups.items()
    }
    telling = ("paused", "resumed", "stalled", "rebuild", "assign", "revoke", "lost")
    lines = [
        str(e) for e in logs if e.get("image_id") in missing or any(word in str(e.get("event", "")) for word in telling)
    ]
    return f"lag: {lags}\n" + "\n".join(lines[-80:])


@pytest.mark.slow
def test_the_chaos_benchmark_meets_its_bar_on_a_short_run() -> None:
    """``benchmarks/chaos.py`` itself, shortened to one cycle of every fault (worker kills,
    the store and the broker frozen and SIGKILLed): ``make test-all`` runs it; the
    10,000-upload figures in the README come from the benchmark's own command."""
    from benchmarks.chaos import run

    figures = run(
        images=600, seed=7, rate=12.0, postgres="postgresql://postgres@127.0.0.1:5432/postgres", processes=False
    )
    assert figures["ok"], figures
    assert figures["completed"] == 600 and figures["store_kills"] == figures["broker_kills"] == 1
