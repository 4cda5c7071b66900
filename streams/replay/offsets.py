"""Offset lookups (first record at a time, earliest, end) that are right on both brokers.

A real Kafka broker answers ListOffsets exactly. The embedded one (tansu 0.6) answers 0
to every time lookup and a wrong end offset (its low watermark, 0, is right: it keeps
every record). So a time lookup is only where reading starts, and the record timestamps
read decide; on the embedded broker the end is where reading finds nothing new.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Sequence

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from processors.errors import BrokerUnavailable
from streams.config import Settings
from streams.runtime.kafka import make_consumer
from streams.runtime.topics import read_until_idle

TIMEOUT_S = 15.0
IDLE_S = 2.0
"""A partition's end is where no record has arrived for this long (embedded broker only)."""


@contextlib.contextmanager
def broker_errors(doing: str) -> Iterator[None]:
    """Translate confluent-kafka's errors into ``BrokerUnavailable`` where they enter darkroom."""
    try:
        yield
    except KafkaException as exc:
        err = exc.args[0] if exc.args else None
        reason = err.str() if isinstance(err, KafkaError) else str(exc)
        raise BrokerUnavailable(f"{doing}: {reason}") from None
    except TimeoutError:  # an admin request's future that got no answer
        raise BrokerUnavailable(f"{doing}: no answer within {TIMEOUT_S:g}s") from None


def reader_id() -> str:
    """A group id of its own for each throwaway reader: assigned, never subscribed, no commits."""
    return f"darkroom.offsets-{uuid.uuid4()}"


def _watermarks(consumer: Consumer, topic: str, partition: int) -> tuple[int, int]:
    marks = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=TIMEOUT_S, cached=False)
    if marks is None:
        raise BrokerUnavailable(f"no watermark offsets for {topic} [{partition}] within {TIMEOUT_S:g}s")
    low, high = marks
    return low, high


def _watermark_offsets(settings: Settings, topic: str, partitions: Sequence[int]) -> dict[int, tuple[int, int]]:
    with broker_errors(f"cannot look up the offsets of {topic}"):
        consumer = make_consumer(settings, reader_id())
        try:
            return {p: _watermarks(consumer, topic, p) for p in partitions}
        finally:
            consumer.close()


def earliest_offsets(settings: Settings, topic: str, partitions: Sequence[int]) -> dict[int, int]:
    """Each partition's low watermark: the first offset retention has not removed yet.

    Right on both brokers; the embedded one keeps every record and answers 0.
    """
    return {p: low for p, (low, _) in _watermark_offsets(settings, topic, partitions).items()}


def end_offsets(settings: Settings, topic: str, partitions: Sequence[int]) -> dict[int, int]:
    """Each partition's end: the offset the next record will get (after the last one).

    A real broker's high watermark; on the embedded broker, whose high watermark is wrong,
    one past the last record read from the earliest offset on (a partition with none: its
    earliest offset).
    """
    if not settings.embedded_kafka:
        return {p: high for p, (_, high) in _watermark_offsets(settings, topic, partitions).items()}
    ends = earliest_offsets(settings, topic, partitions)
    start = [TopicPartition(topic, p, offset) for p, offset in ends.items()]
    with broker_errors(f"cannot read {topic} to its end"):
        for msg in read_until_idle(settings, start, reader_id(), IDLE_S):
            partition, offset = msg.partition(), msg.offset()
            if partition is not None and offset is not None:
                ends[partition] = max(ends[partition], offset + 1)
    return ends


def _time_hints(settings: Settings, topic: str, partitions: Sequence[int], ts_ms: int) -> dict[int, int]:
    """The broker's answer to "first offset at or after ``ts_ms``": -1 for none (exact on a
    real broker, 0 from the embedded one)."""
    with broker_errors(f"cannot look up offsets by time in {topic}"):
        consumer = make_consumer(settings, reader_id())
        try:
            answer = consumer.offsets_for_times([TopicPartition(topic, p, ts_ms) for p in partitions], TIMEOUT_S)
        finally:
            consumer.close()
    for tp in answer:
        if tp.error is not None:
            raise BrokerUnavailable(f"cannot look up offsets by time in {topic} [{tp.partition}]: {tp.error.str()}")
    return {tp.partition: tp.offset for tp in answer}


def offsets_at(settings: Settings, topic: str, partitions: Sequence[int], ts_ms: int) -> dict[int, int | None]:
    """Per partition, the offset of the first record whose timestamp is ``>= ts_ms``; None if none.

    The broker's time lookup is only where reading starts (a real broker's is exact, so
    the first record read there answers; the embedded broker's is 0): reading forward from
    it stops at the first record at or after ``ts_ms``, or at the end.
    """
    found: dict[int, int | None] = dict.fromkeys(partitions)
    hints = _time_hints(settings, topic, partitions, ts_ms)
    pending = {p for p in partitions if hints[p] >= 0}
    if not pending:
        return found
    start = [TopicPartition(topic, p, hints[p]) for p in sorted(pending)]
    with (
        broker_errors(f"cannot read {topic}"),
        contextlib.closing(read_until_idle(settings, start, reader_id(), IDLE_S)) as records,
    ):
        for msg in records:
            partition, offset = msg.partition(), msg.offset()
            if partition in pending and offset is not None and msg.timestamp()[1] >= ts_ms:
                found[partition] = offset
                pending.discard(partition)
                if not pending:
                    break
    return found
