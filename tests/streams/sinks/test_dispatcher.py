"""The webhook dispatcher against real HTTP receivers on loopback and a real database.

Receivers count requests per ``webhook-id``: a claimed attempt must reach them once. The
timings make the old failure modes visible: a backlog far larger than the workers, leases
shorter than a request (so only renewal keeps them), receivers that answer 429.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from processors.errors import ConfigurationError
from streams.config import Settings, load_settings, parse_networks
from streams.sinks import dispatcher, outbox
from streams.sinks.database import Database
from streams.sinks.webhooks.signing import new_secret
from tests.receiver import Answer, Receiver, Request


@contextmanager
def receivers(*answers: Callable[[Request], Answer]) -> Iterator[list[Receiver]]:
    started = [Receiver(a) for a in answers]
    try:
        yield started
    finally:
        for r in started:
            r.close()


def slow(seconds: float) -> Callable[[Request], Answer]:
    return lambda request: (204, {}, seconds)


def make_settings(tmp_path: Path, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "home": tmp_path,
        "database_url": database_url,
        "webhook_allow_networks": "127.0.0.0/8",
        "webhook_schedule": "0,0.1,0.1,0.1",
        "webhook_timeout_s": 5.0,
        "webhook_secrets": new_secret(),
        **overrides,
    }
    return Settings(**values)


def backlog(db: Database, urls: list[str], per_url: int, prefix: str = "evt") -> list[str]:
    """Queue ``per_url`` callback deliveries to each URL; return their webhook ids."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    ids = []
    with db.transaction() as tx:
        for u, url in enumerate(urls):
            for i in range(per_url):
                event_id = f"{prefix}-{u}-{i}"
                ids.append(event_id)
                event = {
                    "event_id": event_id,
                    "upload_event_id": f"up-{u}-{i}",
                    "image_id": f"img-{u}-{i}",
                    "bucket": "darkroom",
                    "source_key": f"uploads/{i}.jpg",
                    "outputs": [],
                    "callback_url": url,
                    "tenant": None,
                    "submitted_at": t0,
                    "completed_at": t0 + timedelta(seconds=1),
                }
                outbox.enqueue(tx, "completed", event)
    return ids


@contextmanager
def running(*services: dispatcher.Dispatcher) -> Iterator[None]:
    stop = threading.Event()
    threads = [threading.Thread(target=s.run, args=(stop,)) for s in services]
    for t in threads:
        t.start()
    try:
        yield
    finally:
        stop.set()
        for t in threads:
            t.join(30)


def delivered(db: Database) -> int:
    """How many deliveries succeeded; fails at once if one will not."""
    with db.transaction() as tx:
        counts = {
            r["status"]: r["n"]
            for r in tx.query("SELECT status, COUNT(*) AS n FROM webhook_deliveries GROUP BY status")
        }
    assert set(counts) <= {"pending", "delivered"}, counts
    return int(counts.get("delivered", 0))


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def db_url(database_url: str) -> str:
    """The engine's database, migrated."""
    with closing(Database(Settings(database_url=database_url))) as db:
        db.migrate()
    return database_url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'results.sqlite3'}"
    with closing(Database(Settings(database_url=url))) as db:
        db.migrate()
    return url


# --- each claimed attempt is sent once -------------------------------------------------


def test_a_backlog_behind_a_slow_receiver_is_sent_exactly_once(tmp_path: Path, db_url: str) -> None:
    # A backlog of 20 requests per worker, 0.4 s each: a row claimed long before a worker
    # is free would outlive any lease shorter than 8 s and be claimed and sent again.
    settings = make_settings(
        tmp_path, db_url, webhook_lease_s=1.0, webhook_timeout_s=0.8, webhook_max_in_flight_per_host=200
    )
    with receivers(slow(0.4)) as [receiver], closing(Database(settings)) as db:
        ids = backlog(db, [receiver.url], 80)
        service = dispatcher.Dispatcher(settings, Database(settings), concurrency=4)
        with closing(service.db), running(service):  # stopped before its database closes
            wait_for(lambda: delivered(db) == len(ids), 60, "every delivery")
        assert receiver.counts() == Counter(dict.fromkeys(ids, 1))
        assert receiver.peak <= 4


def test_two_dispatchers_renew_their_leases_and_never_send_a_webhook_twice(tmp_path: Path, postgres_url: str) -> None:
    # Each request (1 s) outlives the lease (0.8 s): only renewal stops the other
    # dispatcher from taking a row in flight.
    settings = make_settings(
        tmp_path, postgres_url, webhook_lease_s=0.8, webhook_timeout_s=1.5, webhook_max_in_flight_per_host=64
    )
    with receivers(slow(1.0)) as [receiver], closing(Database(settings)) as db:
        db.migrate()
        ids = backlog(db, [receiver.url], 44)
        services = [dispatcher.Dispatcher(settings, Database(settings), concurrency=2) for _ in range(2)]
        with running(*services):
            wait_for(lambda: delivered(db) == len(ids), 60, "every delivery")
        for service in services:
            service.db.close()
        assert receiver.counts() == Counter(dict.fromkeys(ids, 1))
        with db.transaction() as tx:
            assert tx.query("SELECT COUNT(*) AS n FROM webhook_deliveries WHERE claimed_by IS NOT NULL")[0]["n"] == 0


# --- it claims only what it can start ----------------------------------------------------


def test_it_claims_only_what_it_can_start_and_a_delivery_costs_a_bounded_number_of_transactions(
    tmp_path: Path, sqlite_url: str
) -> None:
    # Two slow hosts, 2 slots each, 3 workers: at most 3 rows are ever claimed (2 per
    # host); the rest are neither claimed nor rescheduled while they wait.
    settings = make_settings(tmp_path, sqlite_url, webhook_max_in_flight_per_host=2)
    with receivers(slow(0.2), slow(0.2)) as hosts, closing(Database(settings)) as db:
        ids = backlog(db, [h.url for h in hosts], 15)
        service = dispatcher.Dispatcher(settings, Database(settings), concurrency=3)
        touched: list[dict[str, int]] = []
        started = time.monotonic()
        with closing(service.db), running(service):  # stopped before its database closes
            while delivered(db) < len(ids):
                assert time.monotonic() - started < 60, "deliveries took too long"
                with db.transaction() as tx:
                    rows = tx.query(
                        "SELECT url, COUNT(*) AS n FROM webhook_deliveries"
                        " WHERE status = 'pending' AND next_attempt_at <> created_at GROUP BY url"
                    )
                touched.append({row["url"]: row["n"] for row in rows})
                time.sleep(0.02)
            elapsed = time.monotonic() - started
            transactions = service.db.transactions
        assert touched and all(sum(t.values()) <= 3 and max(t.values(), default=0) <= 2 for t in touched), touched
        assert all(h.peak <= 2 for h in hosts) and all(
            h.counts() == Counter(dict.fromkeys(h.counts(), 1)) for h in hosts
        )
        # One claim and one outcome per delivery, plus one claim per poll that found nothing.
        assert transactions <= 2 * len(ids) + elapsed / service.poll_s + 5, (transactions, elapsed)


def test_rows_queued_before_the_target_key_existed_are_delivered(tmp_path: Path, sqlite_url: str) -> None:
    settings = make_settings(tmp_path, sqlite_url, webhook_max_in_flight_per_host=1)
    with receivers(slow(0.05)) as [receiver], closing(Database(settings)) as db:
        ids = backlog(db, [receiver.url], 4)
        with db.transaction() as tx:
            tx.execute("UPDATE webhook_deliveries SET target_key = NULL")
        service = dispatcher.Dispatcher(settings, Database(settings))
        with closing(service.db), running(service):  # stopped before its database closes
            wait_for(lambda: delivered(db) == len(ids), 30, "every delivery")
        assert receiver.counts() == Counter(dict.fromkeys(ids, 1)) and receiver.peak == 1


# --- it keeps its leases, and only a holder records an outcome --------------------------------


def test_a_dispatcher_that_lost_a_lease_records_nothing(tmp_path: Path, sqlite_url: str) -> None:
    settings = make_settings(tmp_path, sqlite_url, webhook_lease_s=0.5)
    with receivers(slow(1.0)) as [receiver], closing(Database(settings)) as db:
        (webhook_id,) = backlog(db, [receiver.url], 1)
        service = dispatcher.Dispatcher(settings, Database(settings))
        with closing(service.db), running(service):  # stopped before its database closes
            wait_for(lambda: bool(receiver.requests), 10, "the attempt")
            with db.transaction() as tx:  # another dispatcher's claim, as after an expired lease
                tx.execute("UPDATE webhook_deliveries SET claimed_by = 'other', next_attempt_at = ?", (2**62,))
            time.sleep(1.5)  # the attempt ends, renewals come and go
        (row,) = outbox.Outbox(db).deliveries()
        assert (row["status"], row["attempts"], row["next_attempt_at"]) == ("pending", 0, 2**62)
        assert receiver.counts() == Counter({webhook_id: 1})


def test_the_lease_is_a_setting() -> None:
    assert load_settings({"DARKROOM_WEBHOOK_LEASE_S": "2.5"}).webhook_lease_s == 2.5
    assert Settings().webhook_lease_s == 35.0
    with pytest.raises(ConfigurationError, match="DARKROOM_WEBHOOK_LEASE_S"):
        dispatcher.Dispatcher(Settings(webhook_lease_s=0), Database(Settings(database_url="sqlite:///:memory:")))


def test_it_reads_the_webhook_settings_directly() -> None:
    settings = load_settings(
        {
            "DARKROOM_DATABASE_URL": "sqlite:///:memory:",
            "DARKROOM_WEBHOOK_SCHEDULE": "0,0.1,0.2",
            "DARKROOM_WEBHOOK_TIMEOUT_S": "2.5",
            "DARKROOM_WEBHOOK_MAX_IN_FLIGHT_PER_HOST": "2",
            "DARKROOM_WEBHOOK_ALLOW_NETWORKS": "127.0.0.1/32,::1/128",
            "DARKROOM_WEBHOOK_SECRETS": f"{new_secret()},{new_secret()}",
        }
    )
    assert settings.webhook_schedule == (0.0, 0.1, 0.2) and settings.webhook_timeout_s == 2.5
    with closing(Database(settings)) as db:
        service = dispatcher.Dispatcher(settings, db)
    assert service.guard.allow_networks == parse_networks("127.0.0.1/32,::1/128")
    assert service.limiter.max_in_flight_per_host == 2 and len(service.secrets) == 2


# --- throttling ---------------------------------------------------------------------------


def test_a_429_with_retry_after_pauses_its_target_while_other_targets_go_on(tmp_path: Path, sqlite_url: str) -> None:
    settings = make_settings(tmp_path, sqlite_url, webhook_max_in_flight_per_host=1)
    throttling = lambda r: (429, {"Retry-After": "2"}, 0.0) if r.n == 1 else (204, {}, 0.0)  # noqa: E731
    with receivers(throttling, slow(0.05)) as [busy, other], closing(Database(settings)) as db:
        busy_ids = backlog(db, [busy.url], 5, "busy")
        other_ids = backlog(db, [other.url], 10, "other")
        service = dispatcher.Dispatcher(settings, Database(settings))
        with closing(service.db), running(service):  # stopped before its database closes
            wait_for(lambda: delivered(db) == 15, 30, "every delivery")
        first, second, *_ = busy.requests
        first_id, throttled_at, next_at = first.headers["webhook-id"], first.at, second.at
        assert next_at - throttled_at >= 2.0, busy.requests  # nothing for the throttled host meanwhile
        assert other.counts() == Counter(dict.fromkeys(other_ids, 1))
        assert all(r.at < throttled_at + 2.0 for r in other.requests)  # the other host went on
        assert busy.counts() == Counter({**dict.fromkeys(busy_ids, 1), first_id: 2})
