"""The result store under real faults: processes migrating at once, PostgreSQL restarted
under a running result writer."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import structlog.testing

from streams.config import Settings
from streams.runtime.kafka import Record, deliver, make_producer
from streams.runtime.supervisor import Supervisor
from streams.sinks.database import Database, migrations
from streams.sinks.results import get_result, results_spec
from streams.wire.events import Serdes
from tests.helpers import PrivatePostgres, completion

_MIGRATE_AT = """
import sys, time
from streams.config import load_settings
from streams.sinks.database import Database
time.sleep(max(0.0, float(sys.argv[1]) - time.time()))
print(Database(load_settings()).migrate())
"""


def test_four_processes_migrating_a_fresh_postgresql_database_at_once_migrate_it_once(postgres_url: str) -> None:
    start_at = str(time.time() + 2.0)  # every process is past its imports by then
    env = {**Settings(database_url=postgres_url).to_env(), "PATH": "/usr/bin:/bin"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _MIGRATE_AT, start_at],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[3],
        )
        for _ in range(4)
    ]
    results = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [err for _, err in results]
    assert all(err == "" for _, err in results), [err for _, err in results]
    versions = [v for v, _ in migrations()]
    # every version applied by exactly one process (with several migrations, by whichever
    # held the lock when it came up)
    applied = [v for out, _ in results for v in json.loads(out)]
    assert sorted(applied) == versions
    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    assert [r[0] for r in rows] == versions


def _wait_for_rows(db_url: str, settings: Settings, ids: list[str], timeout_s: float) -> set[str]:
    deadline = time.monotonic() + timeout_s
    found: set[str] = set()
    while time.monotonic() < deadline and len(found) < len(ids):
        try:
            db = Database(settings.replace(database_url=db_url))
        except Exception:
            time.sleep(0.5)
            continue
        try:
            found = {i for i in ids if get_result(db, i) is not None}
        except Exception:
            pass
        finally:
            db.close()
        time.sleep(0.5)
    return found


@pytest.mark.integration
def test_the_result_writer_resumes_after_postgresql_restarts(
    settings: Settings, private_postgres: PrivatePostgres, private_postgres_url: str
) -> None:
    """Rows written before, during and after PostgreSQL is down: none is lost, the writer
    reconnects by itself (before, its connection was never re-established)."""
    postgres_url = private_postgres_url
    settings = settings.replace(database_url=postgres_url, retry_backoff_s=0.2, retry_max_backoff_s=1.0)
    serdes = Serdes(settings)
    db = Database(settings)
    db.migrate()
    supervisor = Supervisor(settings, [results_spec(settings, serdes, db)], resources=[db])
    producer = make_producer(settings)
    before = [f"before-{i}" for i in range(5)]
    during = [f"during-{i}" for i in range(5)]
    supervisor.start()
    try:
        deliver(producer, [completion(settings, serdes, i) for i in before])
        assert _wait_for_rows(postgres_url, settings, before, 60) == set(before)
        private_postgres.stop()
        try:
            deliver(producer, [completion(settings, serdes, i) for i in during])
            time.sleep(4)  # the writer meets a dead connection and waits
        finally:
            private_postgres.start()
        assert _wait_for_rows(postgres_url, settings, before + during, 90) == set(before + during)
    finally:
        supervisor.stop.set()
        supervisor.join(30)


@pytest.mark.integration
def test_a_record_the_result_store_rejects_is_dead_lettered_and_its_neighbours_are_written(
    settings: Settings, postgres_url: str
) -> None:
    """Two uploads that share an event id (``Client.emit`` with a repeated idempotency key)
    break the unique final event id: before, the writer crashed on that batch forever."""
    from streams.runtime.topics import DEAD_LETTER
    from tests.helpers import read_topic

    settings = settings.replace(database_url=postgres_url, retry_backoff_s=0.1, poison_attempts=2)
    serdes = Serdes(settings)
    db = Database(settings)
    db.migrate()
    first, clash, last = (completion(settings, serdes, i) for i in ("first", "clash", "last"))
    event = serdes.completed.decode(first.value, first.topic)
    clash_event = {**serdes.completed.decode(clash.value, clash.topic), "event_id": event["event_id"]}
    clash = Record(clash.topic, "clash", serdes.completed.encode(clash_event, clash.topic))
    producer = make_producer(settings)
    supervisor = Supervisor(settings, [results_spec(settings, serdes, db)], resources=[db])
    with structlog.testing.capture_logs() as logs:
        supervisor.start()
        try:
            # first stored before the clash comes: the keys land on different partitions,
            # whose records arrive in no set order, and the later of two is the one refused
            deliver(producer, [first])
            assert _wait_for_rows(postgres_url, settings, ["first"], 60) == {"first"}
            deliver(producer, [clash, last])
            (dead,) = read_topic(settings, settings.topic(DEAD_LETTER), expect=1, timeout_s=60, idle_s=1.0)
            assert _wait_for_rows(postgres_url, settings, ["first", "last"], 30) == {"first", "last"}
        finally:
            supervisor.stop.set()
            supervisor.join(30)
    assert dead.key == "clash" and dead.value == clash.value
    assert dead.headers["darkroom-error-code"] == b"processing_failed"
    # the database's own text stays in the worker's log; the record carries darkroom's message
    message = dead.headers["darkroom-error-message"]
    assert message == b"results could not store the record; the worker's log has the details"
    (given_up,) = [e for e in logs if e["event"] == "sink raised on every attempt; dead-lettering the record"]
    assert type(given_up["exc_info"]).__name__ == "UniqueViolation"
