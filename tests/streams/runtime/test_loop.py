"""The worker loop's policies on in-memory seams (tests/fakes.py): no broker, no sleeps.

What happens when something other than the record is wrong, and when the record is:
outputs before commits, outages waited out, poison isolated, refused outputs failed,
failed commits repeated, and partitions taken away during a pause read again. The same
policies are caused for real against the real broker and store in test_faults.py,
test_stalls.py and test_sigkill.py.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog.testing
from confluent_kafka import KafkaError, TopicPartition

from processors.errors import DarkroomError
from streams.config import Settings
from streams.errors import StorageUnavailable, UndecodableEvent
from streams.runtime.kafka import Record
from streams.runtime.watchdog import Watchdog
from streams.runtime.worker import Worker, WorkerSpec
from tests.fakes import FakeBroker, FakeConsumer, FakeProducer, MemoryStore, group_commits

IN, OUT, FAILED, DEAD = "in", "out", "failed", "images.deadletter"
GROUP = "g"


def _decode(value: bytes | None, topic: str) -> dict[str, Any]:
    try:
        event: dict[str, Any] = json.loads(value or b"")
    except ValueError:
        raise UndecodableEvent("not JSON") from None
    return event


def _fail(event: dict[str, Any], exc: DarkroomError) -> list[Record]:
    return [Record(FAILED, event["image_id"], json.dumps({**event, "code": exc.code}).encode())]


class Loop:
    """A worker on fakes, running on a thread; records what it made."""

    def __init__(self, broker: FakeBroker, spec: WorkerSpec, **settings: Any) -> None:
        self.broker = broker
        self.settings = Settings(
            retry_backoff_s=0.01, retry_max_backoff_s=0.02, poison_attempts=3, stuck_after_s=600, **settings
        )
        self.consumers: list[FakeConsumer] = []
        self.producers: list[FakeProducer] = []
        self.worker = Worker(self.settings, spec, self._producer, self._consumer)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.worker.run, args=(self.stop,), daemon=True)

    def _consumer(self, settings: Settings, group: str, **extra: object) -> FakeConsumer:
        self.consumers.append(FakeConsumer(self.broker, group, **extra))
        return self.consumers[-1]

    def _producer(self, settings: Settings) -> FakeProducer:
        self.producers.append(FakeProducer(self.broker))
        return self.producers[-1]

    def until(self, what: str, condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert self.thread.is_alive(), "the worker stopped"
            assert time.monotonic() < deadline, f"{what} did not happen"
            time.sleep(0.002)

    def committed(self) -> int:
        return sum(max(o, 0) for (g, _, _), o in self.broker.committed.items() if g == GROUP)


@pytest.fixture
def broker() -> FakeBroker:
    return FakeBroker(partitions=2)


@pytest.fixture
def running(broker: FakeBroker) -> Iterator[Callable[..., Loop]]:
    loops: list[Loop] = []

    def start(spec: WorkerSpec, **settings: Any) -> Loop:
        loops.append(Loop(broker, spec, **settings))
        loops[-1].thread.start()
        return loops[-1]

    yield start
    for loop in loops:
        loop.stop.set()
        loop.thread.join(10)
        assert not loop.thread.is_alive()


def _uploads(broker: FakeBroker, *ids: str) -> None:
    for image_id in ids:
        broker.append(IN, image_id, json.dumps({"image_id": image_id}).encode())


def _spec(handle: Callable[[dict[str, Any], Any], list[Record]], *, fail: bool = True) -> WorkerSpec:
    return WorkerSpec(
        name="probe", group_id=GROUP, topics=(IN,), decode=_decode, handle=handle, fail=_fail if fail else None
    )


def _forward(event: dict[str, Any], log: Any) -> list[Record]:
    return [Record(OUT, event["image_id"], json.dumps(event).encode())]


def _ids(broker: FakeBroker, topic: str) -> list[str]:
    return sorted(json.loads(m.value() or b"")["image_id"] for m in broker.records(topic))


def test_inputs_are_committed_only_after_the_broker_took_their_outputs(
    broker: FakeBroker, running: Callable[..., Loop]
) -> None:
    broker.down = True  # the broker takes no output
    _uploads(broker, "a", "b", "c")
    with structlog.testing.capture_logs() as logs:
        loop = running(_spec(_forward))
        loop.until("a pause on the broker", lambda: any(e.get("error_code") == "broker_unavailable" for e in logs))
        loop.until("a few retries", lambda: sum(e.get("waits", 0) > 0 for e in logs) >= 3)
        assert broker.commits == [] and broker.records(OUT) == []  # nothing committed past an undelivered output
        assert len(loop.producers) >= 2 and all(p.purged for p in loop.producers[:-1])  # each failed one replaced
        broker.down = False
        loop.until("all committed", lambda: loop.committed() == 3)
    assert _ids(broker, OUT) == ["a", "b", "c"] and broker.records(FAILED) == []
    assert any(e["event"] == "resumed after an outage" for e in logs)


def test_an_outage_in_the_handler_pauses_seeks_back_and_reads_the_records_again(
    broker: FakeBroker, running: Callable[..., Loop]
) -> None:
    store = MemoryStore(down=True)
    handled: list[str] = []

    def reads_storage(event: dict[str, Any], log: Any) -> list[Record]:
        store.get("b", event["image_id"]) if store.down else None
        handled.append(event["image_id"])
        return _forward(event, log)

    _uploads(broker, "a", "b", "c", "d")
    with structlog.testing.capture_logs() as logs:
        loop = running(_spec(reads_storage))
        loop.until("several waits", lambda: sum(e.get("error_code") == "storage_unavailable" for e in logs) >= 3)
        assert handled == [] and broker.records(FAILED) == []  # an outage fails nothing
        consumer = loop.consumers[-1]
        assert consumer.paused or loop.worker.outage.since is not None
        store.down = False
        loop.until("all committed", lambda: loop.committed() == 4)
    assert _ids(broker, OUT) == ["a", "b", "c", "d"] and sorted(handled) == ["a", "b", "c", "d"]
    waits = [e["waits"] for e in logs if e["event"] == "dependency unavailable; paused, will retry"]
    assert waits[:3] == [1, 2, 3]


def test_a_poison_record_is_tried_a_bounded_number_of_times_then_failed_alone(
    broker: FakeBroker, running: Callable[..., Loop]
) -> None:
    tries: list[str] = []

    def buggy(event: dict[str, Any], log: Any) -> list[Record]:
        tries.append(event["image_id"])
        if event["image_id"] == "poison":
            raise RuntimeError("a bug only this record triggers")
        return _forward(event, log)

    _uploads(broker, "a", "poison", "b")
    loop = running(_spec(buggy))
    loop.until("all committed", lambda: loop.committed() == 3)
    assert tries.count("poison") == 3
    assert [json.loads(m.value() or b"")["code"] for m in broker.records(FAILED)] == ["processing_failed"]
    assert _ids(broker, OUT) == ["a", "b"]


def test_without_a_failer_a_poison_record_is_dead_lettered_with_the_reason(
    broker: FakeBroker, running: Callable[..., Loop]
) -> None:
    def buggy(event: dict[str, Any], log: Any) -> list[Record]:
        raise RuntimeError("always")

    _uploads(broker, "x")
    loop = running(_spec(buggy, fail=False))
    loop.until("committed", lambda: loop.committed() == 1)
    (dead,) = broker.records(DEAD)
    headers = dict(dead.headers())
    assert headers["darkroom-error-code"] == b"processing_failed" and dead.key() == b"x"
    assert headers["darkroom-source-topic"] == IN.encode() and headers["darkroom-consumer-group"] == GROUP.encode()


def test_undecodable_bytes_go_to_the_dead_letter_topic_exactly_as_they_came(
    broker: FakeBroker, running: Callable[..., Loop]
) -> None:
    broker.append(IN, b"\xff key", b"\x00 not json")
    _uploads(broker, "fine")
    loop = running(_spec(_forward))
    loop.until("committed", lambda: loop.committed() == 2)
    (dead,) = broker.records(DEAD)
    assert (dead.key(), dead.value()) == (b"\xff key", b"\x00 not json")
    assert dict(dead.headers())["darkroom-error-code"] == b"undecodable_event"
    assert _ids(broker, OUT) == ["fine"]


def test_an_output_the_broker_refuses_for_good_fails_its_input_with_output_rejected(
    broker: FakeBroker, running: Callable[..., Loop]
) -> None:
    broker.refuse = lambda topic, value: (
        KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "too large") if topic == OUT and b"big" in (value or b"") else None
    )
    _uploads(broker, "big", "small")
    loop = running(_spec(_forward))
    loop.until("committed", lambda: loop.committed() == 2)
    (failed,) = broker.records(FAILED)
    assert json.loads(failed.value() or b"") == {"image_id": "big", "code": "output_rejected"}
    assert _ids(broker, OUT) == ["small"]


def test_a_commit_that_fails_is_made_again_for_the_partitions_kept(
    broker: FakeBroker, running: Callable[..., Loop]
) -> None:
    loop = running(_spec(_forward))
    loop.until("assigned", lambda: bool(loop.consumers) and bool(loop.consumers[-1].assigned))
    loop.consumers[-1].fail_commits = 1
    _uploads(broker, "a")
    loop.until("committed", lambda: loop.committed() == 1)
    assert _ids(broker, OUT) == ["a"]


def test_partitions_taken_away_during_a_pause_fetch_again_when_they_are_handed_back(broker: FakeBroker) -> None:
    """The mechanism of the chaos runs' silent stalls, on a consumer that keeps pauses as
    librdkafka does: lost inside the pause, handed back after it."""
    loop = Loop(broker, _spec(_forward))
    worker, consumer = loop.worker, FakeConsumer(broker, GROUP)
    consumer.subscribe([IN], on_assign=worker._on_assign)
    consumer.poll(0)  # assigned
    with worker._paused(consumer):
        consumer.lose()
    consumer.regain()
    _uploads(broker, "a", "b")
    got = [m.value() for m in consumer.consume(10, 0)]
    assert len(got) == 2 and consumer.paused == set()
    # and a partition handed out inside a pause stays paused until the pause ends
    consumer.lose()
    with worker._paused(consumer):
        consumer.regain()
        _uploads(broker, "c")
        assert consumer.consume(10, 0) == [] and consumer.paused
    assert [m.key() for m in consumer.consume(10, 0)] == [b"a", b"b", b"c"]  # from the committed offset: none


def test_the_watchdog_rebuilds_a_consumer_whose_partitions_were_never_fetched(broker: FakeBroker) -> None:
    class Unfetched(FakeConsumer):
        def get_watermark_offsets(
            self, partition: TopicPartition, timeout: float = -1, cached: bool = False
        ) -> tuple[int, int]:
            return -1001, -1001

    made: list[FakeConsumer] = []

    def consumers(settings: Settings, group: str, **extra: object) -> FakeConsumer:
        made.append((Unfetched if not made else FakeConsumer)(broker, group))
        return made[-1]

    settings = Settings(session_timeout_ms=1000)
    worker = Worker(settings, _spec(_forward), lambda s: FakeProducer(broker), consumers)
    clock = [0.0]
    worker.watchdog = Watchdog(settings, GROUP, worker.log, clock=lambda: clock[0])  # its time runs ahead
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    with structlog.testing.capture_logs() as logs:
        thread.start()
        try:
            deadline = time.monotonic() + 10
            while len(made) < 2 and time.monotonic() < deadline:
                clock[0] += 5.0  # 30 s (three session timeouts, at least 30 s) pass in a few turns
                time.sleep(0.01)
            _uploads(broker, "a")
            while not broker.records(OUT) and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            stop.set()
            thread.join(10)
    assert len(made) == 2 and made[0].closed
    (line,) = [e for e in logs if e["event"].startswith("stalled; rebuilding")]
    assert "none fetched" in line["reason"]
    assert _ids(broker, OUT) == ["a"]
    assert group_commits(broker, GROUP)


def test_storage_errors_of_the_fake_are_darkroom_errors() -> None:
    """The fake store speaks darkroom's error tree, as ObjectStore does at its boundary."""
    store = MemoryStore()
    assert store.put("b", "k", b"1", if_absent=True) and not store.put("b", "k", b"2", if_absent=True)
    assert store.get("b", "k") == b"1" and store.stat("b", "k").size == 1
    store.down = True
    with pytest.raises(StorageUnavailable):
        store.get("b", "k")
