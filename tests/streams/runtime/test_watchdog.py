"""The watchdog sees stalls from the broker's side, and a stalled worker recovers or exits.

The consumers here are real ones in the states the chaos runs left workers in: partitions
that stopped fetching (the worker's own view of its lag goes stale and says 0), and a
group whose committed offsets lie beyond the partitions' end (as after a broker that
restarted from an older log).
"""

from __future__ import annotations

import time
import uuid

import pytest
import structlog
import structlog.testing
from confluent_kafka import TopicPartition

from streams.client import Client
from streams.config import Settings
from streams.dev.samples import photo_jpeg
from streams.errors import WorkerStalled
from streams.handlers.steps import worker_specs
from streams.runtime.kafka import Record, deliver, make_consumer, make_producer
from streams.runtime.supervisor import Supervisor
from streams.runtime.topics import UPLOADED
from streams.runtime.watchdog import Stall, Watchdog
from streams.runtime.worker import Worker

pytestmark = pytest.mark.integration


def _produce(settings: Settings, n: int, tag: str) -> None:
    topic = settings.topic(UPLOADED)
    deliver(make_producer(settings), [Record(topic, f"{tag}{i}", f"{tag}{i}".encode()) for i in range(n)])


def _consume_and_commit(settings: Settings, group: str, n: int) -> object:
    consumer = make_consumer(settings, group)
    consumer.subscribe([settings.topic(UPLOADED)])
    got, deadline = 0, time.monotonic() + 60
    while got < n and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            consumer.commit(msg, asynchronous=False)
            got += 1
    assert got == n
    return consumer


def test_lag_nobody_reads_is_found_from_the_broker_side_where_the_consumer_sees_none(settings: Settings) -> None:
    settings = settings.replace(stuck_after_s=1.0)
    group = f"wd-{uuid.uuid4()}"
    _produce(settings, 6, "a")
    consumer = _consume_and_commit(settings, group, 6)
    try:
        watchdog = Watchdog(settings, group, structlog.get_logger("test"))
        assert watchdog.check(consumer, free_s=5.0) is None  # caught up: nothing to say
        consumer.pause(consumer.assignment())  # fetching stops, as it did after the lost assignment
        _produce(settings, 4, "b")
        time.sleep(1.0)
        stale = sum(
            consumer.get_watermark_offsets(tp, cached=True)[1] - max(tp.offset, 0)
            for tp in consumer.committed(consumer.assignment(), timeout=10)
        )
        assert stale == 0  # the consumer's own view: no lag at all
        assert Watchdog(settings, group, structlog.get_logger("test")).check(consumer, free_s=0.5) is None  # busy
        stall = Watchdog(settings, group, structlog.get_logger("test")).check(consumer, free_s=5.0)
        assert stall is not None and stall.reason.startswith("lag 4 on "), stall
        assert stall.rewind == []
    finally:
        consumer.close()


def test_a_group_committed_past_the_end_is_moved_back_and_reads_what_comes(settings: Settings) -> None:
    """Committed offsets beyond the end make the embedded broker answer every fetch with
    nothing: before, the ingest worker waited there forever. Now it moves the group back
    to the beginning (reading twice is harmless, skipping is a loss), says so, and the
    uploads complete."""
    settings = settings.replace(stuck_after_s=2.0)
    client = Client(settings)
    before = [client.submit(photo_jpeg(200, 150, seed=i), f"a{i}.jpg", "thumbnail:sizes=32") for i in range(2)]
    topic = settings.topic(UPLOADED)
    committer = make_consumer(settings, settings.topic("darkroom.ingest"))
    partitions = committer.list_topics(topic, timeout=10).topics[topic].partitions
    committer.commit(offsets=[TopicPartition(topic, p, 1000) for p in partitions], asynchronous=False)
    committer.close()
    supervisor = Supervisor(settings, worker_specs(settings, ["ingest", "thumbnail"]))
    with structlog.testing.capture_logs() as logs:
        supervisor.start()
        try:
            after = [client.submit(photo_jpeg(200, 150, seed=i), f"b{i}.jpg", "thumbnail:sizes=32") for i in range(2)]
            finals = client.wait([*before, *after], timeout_s=90)
        finally:
            supervisor.stop.set()
            supervisor.join(30)
    assert {s.image_id: finals[s.image_id].status for s in [*before, *after] if s.image_id in finals} == {
        s.image_id: "completed" for s in [*before, *after]
    }
    (rebuilt, *_) = [e for e in logs if e["event"].startswith("stalled; rebuilding")]
    assert rebuilt["worker"] == "ingest" and "beyond the partitions' end" in rebuilt["reason"]
    assert set(rebuilt["rewind"].values()) == {0}


def test_a_worker_rebuilt_in_vain_gives_up_and_its_process_exits_1(settings: Settings) -> None:
    (spec,) = worker_specs(settings, ["ingest"])
    worker = Worker(settings, spec)
    consumer, producer = worker._subscribed(), make_producer(settings)
    stall = Stall("lag 3 on 12 partitions and no commit for 999s")
    for _ in range(3):
        consumer, producer = worker._rebuilt(consumer, producer, stall)
    with pytest.raises(WorkerStalled, match="still stalled after 3 rebuilds"):
        worker._rebuilt(consumer, producer, stall)
    consumer.close()
