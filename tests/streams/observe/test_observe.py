"""Metrics and health on a real endpoint, read over HTTP during real runs (issue 13).

Counters are process-wide, so each check compares a scrape before with one after. The
values are parsed by prometheus-client's own text parser, independent of how darkroom
writes them.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams import Client
from streams.config import Settings
from streams.dev.samples import photo_jpeg
from streams.observe import server
from streams.runtime.kafka import Record, deliver, make_producer
from streams.runtime.storage import ObjectStore
from streams.runtime.supervisor import Supervisor
from streams.runtime.topics import COMPLETED, UPLOADED
from streams.runtime.worker import WorkerSpec
from streams.sinks.database import Database
from streams.sinks.results import results_spec
from streams.wire.events import Serdes
from tests.helpers import PrivatePostgres, completion

pytestmark = pytest.mark.integration


@pytest.fixture
def endpoint() -> Iterator[str]:
    """The endpoint of this (test) process, on a free port; short stuck time for the tests."""
    srv = server.start(0, stuck_after_s=3.0, host="127.0.0.1")
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()
    srv.server_close()


def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics``: (name, sorted labels) → value."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


def probe(base: str, path: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"{base}{path}", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def eventually(check: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Seconds until ``check`` held; fails the test at ``timeout_s``."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout_s, f"not within {timeout_s}s: {what}"
        time.sleep(0.25)
    return time.monotonic() - started


def _gated_spec(settings: Settings, gate: threading.Event, name: str = "gated") -> WorkerSpec:
    """A worker on the uploads topic whose handler waits for ``gate``: a real loop and broker,
    with progress under the test's control."""
    return WorkerSpec(
        name=name,
        group_id=settings.topic(f"test.{name}"),
        topics=(settings.topic(UPLOADED),),
        decode=lambda value, _topic: {"value": value},
        handle=lambda _event, _log: (gate.wait(), [])[1],
    )


def test_lag_is_the_backlog_then_zero_and_consumed_records_are_counted(settings: Settings, endpoint: str) -> None:
    """K records produced before the consumer starts: lag K, then 0 (the embedded broker's
    ListOffsets end offset is wrong; the lag must come from fetched watermarks)."""
    k = 7
    deliver(make_producer(settings), [Record(settings.topic(UPLOADED), f"img-{i}", b"x") for i in range(k)])
    gate = threading.Event()
    spec = _gated_spec(settings, gate)
    before = scrape(endpoint)
    supervisor = Supervisor(settings, [spec])
    supervisor.start()
    try:
        lag = lambda: total(scrape(endpoint), "darkroom_consumer_lag", group=spec.group_id)  # noqa: E731
        eventually(lambda: lag() == k, 60, f"lag {k} while the handler is held")
        gate.set()
        eventually(lambda: lag() == 0, 60, "lag 0 once every record is committed")
        after = scrape(endpoint)
        consumed = total(after, "darkroom_records_consumed_total", group=spec.group_id) - total(
            before, "darkroom_records_consumed_total", group=spec.group_id
        )
        assert consumed == k
    finally:
        gate.set()
        supervisor.stop.set()
        supervisor.join(30)


def test_a_run_of_n_images_shows_in_the_counters(
    settings: Settings, store: ObjectStore, workers: Supervisor, endpoint: str
) -> None:
    n = 4
    before = scrape(endpoint)
    client = Client(settings, store)
    subs = [client.submit(photo_jpeg(320, 240, seed=i), f"p{i}.jpg", "thumbnail:sizes=64") for i in range(n)]
    subs.append(client.submit(b"not an image at all", "bad.jpg", "thumbnail:sizes=64"))
    finals = client.wait(subs, timeout_s=120)
    assert sorted(f.status for f in finals.values()) == ["completed"] * n + ["failed"]
    after = scrape(endpoint)

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    ingest, thumbnail = settings.topic("darkroom.ingest"), settings.topic("darkroom.thumbnail")
    assert delta("darkroom_records_consumed_total", group=ingest) == n + 1
    assert delta("darkroom_records_consumed_total", group=thumbnail) == n + 1
    assert delta("darkroom_records_produced_total", group=thumbnail, topic=settings.topic(COMPLETED)) == n
    assert delta("darkroom_step_duration_seconds_count", operation="thumbnail") == n
    assert delta("darkroom_failures_total", step="thumbnail", code="not_an_image") == 1

    def caught_up() -> bool:  # a series per partition once the worker has looked its offsets up
        samples = scrape(endpoint).items()
        lags = [v for (n, labels), v in samples if n == "darkroom_consumer_lag" and ("group", thumbnail) in labels]
        return len(lags) == settings.partitions and sum(lags) == 0

    eventually(caught_up, 30, "lag reported for every partition, and 0")
    assert total(after, "darkroom_images_in_flight", worker="thumbnail") == 0


def test_a_hung_handler_turns_health_and_readiness_red_and_they_recover(settings: Settings, endpoint: str) -> None:
    settings = settings.replace(stuck_after_s=3.0)
    gate = threading.Event()
    deliver(make_producer(settings), [Record(settings.topic(UPLOADED), "img", b"x")])
    supervisor = Supervisor(settings, [_gated_spec(settings, gate, "hung")])
    supervisor.start()
    try:
        eventually(lambda: probe(endpoint, "/readyz")[0] == 200, 60, "ready once joined")
        took = eventually(lambda: probe(endpoint, "/healthz")[0] == 503, 30, "unhealthy while hung")
        assert took < 3.0 + 5.0  # the configured time, and the time the record took to arrive
        status, body = probe(endpoint, "/readyz")
        assert status == 503
        (loop,) = [loop for loop in body["loops"] if loop["name"] == "hung"]
        assert loop["lag"] == 1 and "no progress" in loop["problems"][0]
        gate.set()
        eventually(lambda: probe(endpoint, "/healthz")[0] == 200, 30, "healthy once it commits")
        eventually(lambda: probe(endpoint, "/readyz")[0] == 200, 30, "ready again")
    finally:
        gate.set()
        supervisor.stop.set()
        supervisor.join(30)


def test_a_database_outage_is_not_ready_with_its_reason_then_ready_again(
    settings: Settings, private_postgres: PrivatePostgres, private_postgres_url: str, endpoint: str
) -> None:
    """PostgreSQL stopped under a running result writer: not ready (paused, with the reason)
    but healthy, since a restart would not bring the database back; ready once it is."""
    settings = settings.replace(
        database_url=private_postgres_url, retry_backoff_s=0.2, retry_max_backoff_s=1.0, stuck_after_s=3.0
    )
    db = Database(settings)
    db.migrate()
    supervisor = Supervisor(settings, [results_spec(settings, Serdes(settings), db)], resources=[db])
    supervisor.start()
    try:
        eventually(lambda: probe(endpoint, "/readyz")[0] == 200, 60, "ready once joined")
        private_postgres.stop()
        try:
            deliver(make_producer(settings), [completion(settings, Serdes(settings), "outage-a")])
            eventually(lambda: probe(endpoint, "/readyz")[0] == 503, 60, "not ready while the database is down")
            _, body = probe(endpoint, "/readyz")
            (loop,) = [loop for loop in body["loops"] if loop["name"] == "results"]
            assert loop["paused"].startswith("database_unavailable:")
            time.sleep(4)  # longer than DARKROOM_STUCK_AFTER_S, with lag: paused is not stuck
            assert probe(endpoint, "/healthz")[0] == 200
        finally:
            private_postgres.start()
        eventually(lambda: probe(endpoint, "/readyz")[0] == 200, 90, "ready once the database answers")
    finally:
        supervisor.stop.set()
        supervisor.join(30)
