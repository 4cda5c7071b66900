"""Offsets, ends and lag (``streams.runtime.offsets``) on the test broker, and its error
translation and lag arithmetic on their own.

Records carry explicit timestamps, so every expected offset is known: partition 0 holds
minutes 0, 2, 4, 6, 8 after ``T0`` at offsets 0–4, partition 1 minutes 1, 3, 5, 7, 9.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streams.config import Settings
from streams.errors import BrokerUnavailable
from streams.runtime import kafka, offsets
from streams.runtime.kafka import make_admin, make_consumer
from streams.runtime.offsets import (
    broker_errors,
    committed,
    committed_lag,
    earliest_offsets,
    end_offsets,
    fetched_ends,
    fetched_lag,
    group_positions,
    lag,
    offsets_at,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RECORDS = 10
PARTITIONS = [0, 1]


def ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def timed_topic(settings: Settings, name: str) -> str:
    """A two-partition topic ``name`` (under the test's prefix) of ten records, one a minute
    from ``T0``, alternating partitions."""
    topic = settings.topic(name)
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers()})
    for future in admin.create_topics([NewTopic(topic, len(PARTITIONS), 1)]).values():
        future.result(15)
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers()})
    for minute in range(RECORDS):
        producer.produce(
            topic, value=b"r%d" % minute, partition=minute % 2, timestamp=ms(T0 + timedelta(minutes=minute))
        )
    assert producer.flush(15) == 0
    return topic


@pytest.fixture
def topic(settings: Settings) -> str:
    return timed_topic(settings, "offsets.test")


def commit(settings: Settings, group: str, topic: str, offsets: dict[int, int]) -> None:
    consumer = make_consumer(settings, group)
    try:
        consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False)
    finally:
        consumer.close()


# --- on their own ---------------------------------------------------------------------


def test_lag_is_end_minus_position_never_below_zero_in_partition_order() -> None:
    ends = {("t", 0): 5, ("t", 1): 3, ("u", 0): 7}
    positions = {("u", 0): 9, ("t", 1): 3, ("t", 0): 1, ("v", 0): 0}  # v: no end known
    assert list(lag(ends, positions).items()) == [(("t", 0), 4), (("t", 1), 0), (("u", 0), 0)]
    assert lag(ends, {}) == {}


def test_broker_errors_become_broker_unavailable_with_what_was_being_done(monkeypatch: pytest.MonkeyPatch) -> None:
    # a record of connection errors of its own: other tests in this process leave theirs
    monkeypatch.setattr(offsets, "CLIENT_ERRORS", kafka._ClientErrors())
    transport = KafkaException(KafkaError(KafkaError._TRANSPORT))
    with (
        pytest.raises(BrokerUnavailable, match=r"^reading t: Local: Broker transport failure$"),
        broker_errors("reading t"),
    ):
        raise transport
    with pytest.raises(BrokerUnavailable, match=r"^listing: no answer within 15s$"), broker_errors("listing"):
        raise TimeoutError
    with pytest.raises(ValueError), broker_errors("other"):  # only the broker's errors are translated
        raise ValueError("mine")


# --- on the test broker ---------------------------------------------------------------


@pytest.mark.integration
def test_offsets_at_is_the_first_record_at_or_after_the_time(
    settings: Settings, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Right on the embedded broker too, whose own time lookup answers 0. Reading stops at
    each partition's end: with a minute of idleness needed to stop otherwise, all five
    lookups end within seconds."""
    read = offsets.read_until_idle
    monkeypatch.setattr(offsets, "read_until_idle", lambda *args: read(*args, idle_s=60.0))
    started = time.monotonic()
    assert offsets_at(settings, topic, PARTITIONS, ms(T0 + timedelta(minutes=4, seconds=30))) == {0: 3, 1: 2}
    assert offsets_at(settings, topic, PARTITIONS, ms(T0 + timedelta(minutes=4))) == {0: 2, 1: 2}
    assert offsets_at(settings, topic, PARTITIONS, ms(T0 - timedelta(hours=1))) == {0: 0, 1: 0}
    assert offsets_at(settings, topic, PARTITIONS, ms(T0 + timedelta(minutes=9))) == {0: None, 1: 4}
    assert offsets_at(settings, topic, PARTITIONS, ms(T0 + timedelta(hours=1))) == {0: None, 1: None}
    assert time.monotonic() - started < 30


@pytest.mark.integration
def test_earliest_and_end_offsets(settings: Settings, topic: str) -> None:
    assert earliest_offsets(settings, topic, PARTITIONS) == {0: 0, 1: 0}
    assert end_offsets(settings, topic, PARTITIONS) == {0: 5, 1: 5}
    empty = settings.topic(f"{topic}.empty")
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers()})
    admin.create_topics([NewTopic(empty, 1, 1)])[empty].result(15)
    assert end_offsets(settings, empty, [0]) == {0: 0}
    assert fetched_ends(settings, [TopicPartition(topic, 0, 5), TopicPartition(topic, 1)]) == {
        (topic, 0): 5,
        (topic, 1): 5,
    }
    assert fetched_ends(settings, []) == {}


@pytest.mark.integration
def test_lag_of_a_group_is_end_minus_committed_or_earliest(settings: Settings, topic: str) -> None:
    group = settings.topic(f"offsets-{uuid.uuid4().hex[:8]}")
    commit(settings, group, topic, {0: 1})
    admin = make_admin(settings)
    assert committed(admin, group) == {(topic, 0): 1}
    assert committed(admin, group, [TopicPartition(topic, 1)]) == {}
    assert group_positions(settings, admin, group, {topic: PARTITIONS}) == {(topic, 0): 1, (topic, 1): 0}
    assert committed_lag(settings, group, [topic]) == 4 + 5
    assert committed_lag(settings, group, [topic, f"{topic}.none"]) == 9  # a topic not there counts none

    producer = Producer({"bootstrap.servers": settings.bootstrap_servers()})
    for i in range(3):
        producer.produce(topic, value=b"more%d" % i, partition=1)
    assert producer.flush(15) == 0
    commit(settings, group, topic, {1: 2})
    assert end_offsets(settings, topic, PARTITIONS) == {0: 5, 1: 8}
    assert committed_lag(settings, group, [topic]) == 4 + 6


@pytest.mark.integration
def test_fetched_lag_uses_what_the_consumer_fetched_and_asks_nothing(settings: Settings, topic: str) -> None:
    """What a worker reports of its assignment: the cached high watermarks of its own
    fetches minus its committed positions; a partition not fetched yet is left out."""
    positions = {(topic, 0): 1, (topic, 1): 5}
    consumer = make_consumer(settings, f"offsets-{uuid.uuid4()}")
    try:
        assert fetched_lag(consumer, positions) == {}  # nothing assigned, nothing fetched
        consumer.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + 15
        while (found := fetched_lag(consumer, positions)) == {} and time.monotonic() < deadline:
            consumer.consume(10, timeout=0.2)
        assert found == {(topic, 0): 4}  # partition 1 was never fetched
    finally:
        consumer.close()
