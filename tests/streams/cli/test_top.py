"""``darkroom top``: its columns and exits on their own (the rate and quantile math:
``tests/streams/observe/test_scrape.py``), then the command on the test broker with a real
metrics endpoint (``streams.observe.server``) serving real metrics."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer, TopicPartition

from streams.cli import build_parser, top
from streams.cli.top import lag_columns, service_of
from streams.config import Settings
from streams.errors import BrokerUnavailable
from streams.observe import metrics, server
from streams.observe.scrape import Scrape
from streams.runtime.kafka import make_consumer
from streams.runtime.offsets import lag
from streams.runtime.topics import UPLOADED
from tests.streams.cli.test_cli import assert_one_line_error, darkroom

# --- on its own -----------------------------------------------------------------------


def test_lag_columns() -> None:
    ends, positions = {("t", 1): 3, ("t", 0): 5, ("u", 0): 7}, {("t", 1): 3, ("t", 0): 1, ("u", 0): 9}
    assert lag_columns(lag(ends, positions)) == {
        "lag": 4,
        "max_partition_lag": 4,
        "partitions": [
            {"topic": "t", "partition": 0, "lag": 4},
            {"topic": "t", "partition": 1, "lag": 0},
            {"topic": "u", "partition": 0, "lag": 0},
        ],
    }
    assert lag_columns({}) == {"lag": None, "max_partition_lag": None, "partitions": []}


def test_service_of() -> None:
    assert service_of("t1.darkroom.thumbnail", "t1.") == "thumbnail"
    assert service_of("darkroom.results", "") == "results"
    assert service_of("t1.something-else", "t1.") is None
    assert service_of("darkroom.", "") is None


def test_live_view_exits_0_on_ctrl_c_and_fails_only_before_its_first_frame() -> None:
    class Stub:
        interval_s = 0.01

        def __init__(self, *outcomes: Any) -> None:
            self.outcomes = list(outcomes)

        def refresh(self) -> Any:
            outcome = self.outcomes.pop(0)
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome

    frame: tuple[list[Any], list[Any]] = ([], [])
    gone = BrokerUnavailable("gone")
    assert top._live(Stub(frame, gone, frame, KeyboardInterrupt()), []) == 0  # type: ignore[arg-type]
    with pytest.raises(BrokerUnavailable):
        top._live(Stub(gone), [])  # type: ignore[arg-type]


def test_unreachable_broker_is_one_line_in_bounded_time(tmp_path: Path) -> None:
    env = {"DARKROOM_HOME": str(tmp_path), "DARKROOM_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    assert_one_line_error(darkroom("top", "--once", "--json", env=env), "broker_unavailable", 1)


def test_interval_must_be_positive(tmp_path: Path) -> None:
    result = darkroom("top", "--once", "--interval", "0", env={"DARKROOM_HOME": str(tmp_path)})
    assert_one_line_error(result, "invalid_parameters", 2)


# --- on the test broker ---------------------------------------------------------------


def run_top(settings: Settings, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[str, str]:
    """``darkroom top ARGS`` through the real parser and command, in this process."""
    parsed = build_parser().parse_args(["top", *args])
    assert parsed.func(parsed, settings) == 0
    captured = capsys.readouterr()
    return captured.out, captured.err


def lagging_group(settings: Settings, name: str) -> tuple[str, str]:
    """Group ``<prefix>darkroom.NAME`` on the upload topic: partition 0 holds 5 records and
    the group committed 1 there, partition 1 holds 2 it never committed (so it starts at
    the earliest, 0): lag 4 + 2 = 6, the largest 4."""
    topic, group = settings.topic(UPLOADED), settings.topic(f"darkroom.{name}")
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers()})
    for i in range(7):
        producer.produce(topic, key=f"k{i}", value=b"not an upload event", partition=0 if i < 5 else 1)
    assert producer.flush(15) == 0
    consumer = make_consumer(settings, group)
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
    finally:
        consumer.close()
    return group, topic


def row_of(doc: dict[str, Any], group: str) -> dict[str, Any]:
    [row] = [g for g in doc["groups"] if g["group"] == group]
    return row


@pytest.mark.integration
def test_lag_is_end_minus_committed_without_metrics(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    group, topic = lagging_group(settings, "ingest")
    out, err = run_top(settings, capsys, "--once", "--json", "--interval", "0.2")
    doc = json.loads(out)
    row = row_of(doc, group)
    assert (row["state"], row["members"], row["lag"], row["max_partition_lag"]) == ("empty", 0, 6, 4)
    lags = {(p["topic"], p["partition"]): p["lag"] for p in row["partitions"]}
    assert lags[(topic, 0)] == 4 and lags[(topic, 1)] == 2 and sum(lags.values()) == 6
    assert (row["records_per_s"], row["p50_s"], row["p95_s"], row["failures_per_min"], row["paused"]) == (
        None,
        None,
        None,
        None,
        None,
    )
    assert doc["endpoints"] == []
    assert "no metrics endpoint" in err and len(err.strip().splitlines()) == 1

    out, _ = run_top(settings, capsys, "--once", "--interval", "0.2")
    header, *lines = out.strip().splitlines()
    assert header.split()[:4] == ["GROUP", "STATE", "MEMBERS", "LAG"]
    [line] = [line.split() for line in lines if line.split()[0] == group]
    assert line[:5] == [group, "empty", "0", "6", "4"] and line[5:] == ["–"] * 5


@pytest.mark.integration
def test_rates_and_quantiles_come_from_two_scrapes_of_a_real_endpoint(
    settings: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"op{uuid.uuid4().hex[:8]}"  # labels of its own: no other test's metrics mix in
    group, topic = lagging_group(settings, name)
    endpoint = server.start(0, 600.0, host="127.0.0.1")
    url = f"http://127.0.0.1:{endpoint.server_port}/metrics"
    records, step = metrics.RECORDS_CONSUMED.labels(group, topic), metrics.STEP_DURATION.labels(name, "pillow")
    failures = metrics.FAILURES.labels(name, "not_an_image")
    records.inc(100)  # before the first scrape: not in the window
    for _ in range(5):
        step.observe(7.0)
    failures.inc(4)
    metrics.PAUSED.labels(name, "storage").set(1)
    metrics.PAUSED.labels(name, "registry").set(0)

    scraped: list[list[Scrape]] = []
    first = threading.Event()
    real = top.scrape_all

    def scrape_all(urls: list[str]) -> list[Scrape]:
        found = real(urls)
        scraped.append(found)
        first.set()
        return found

    def during_the_window() -> None:  # after the first scrape, before the second (>= --interval later)
        first.wait(30)
        records.inc(30)
        for _ in range(10):
            step.observe(0.03)  # all in the (0.025, 0.05] bucket
        failures.inc(2)

    monkeypatch.setattr(top, "scrape_all", scrape_all)
    worker = threading.Thread(target=during_the_window)
    worker.start()
    try:
        out, err = run_top(
            settings,
            capsys,
            "--once",
            "--json",
            "--interval",
            "1",
            "--metrics",
            url,
            "--metrics",
            "http://127.0.0.1:1/m",
        )
    finally:
        worker.join(30)
        endpoint.shutdown()
        endpoint.server_close()
    doc = json.loads(out)
    assert doc["endpoints"] == [{"url": url, "ok": True}, {"url": "http://127.0.0.1:1/m", "ok": False}]
    assert "http://127.0.0.1:1/m did not answer" in err and len(err.strip().splitlines()) == 1
    [[before, _], [after, _]] = scraped
    elapsed = after.at - before.at
    assert elapsed >= 1.0
    row = row_of(doc, group)
    assert (row["lag"], row["max_partition_lag"]) == (6, 4)
    assert row["records_per_s"] == pytest.approx(30 / elapsed)
    assert row["p50_s"] == pytest.approx(0.0375)  # 0.025 + 0.025 * 5/10; the 7 s steps came before
    assert row["p95_s"] == pytest.approx(0.04875)
    assert row["failures_per_min"] == pytest.approx(2 * 60 / elapsed)
    assert row["paused"] == ["storage"]
