"""Offsets, partition ends and lag, found one way everywhere and right on both brokers.

A real Kafka broker answers ListOffsets exactly. The embedded one (tansu 0.6) answers 0
to every time lookup and a wrong end offset; its low watermark (0: it keeps every
record) is right, and so is the high watermark that arrives with fetched data. So:

- a partition's **end** is the high watermark a fetch answer reports: one small fetch per
  partition by a throwaway reader (``fetched_ends``, ``end_offsets``), or what a consumer
  that is fetching anyway has cached (``fetched_end``);
- its **beginning** is the low watermark (``earliest_offsets``);
- a **time lookup** is only where reading starts: the timestamps of the records read
  decide, up to the partition's end (``offsets_at``). Records are read only where their
  content or timestamp is needed (``read_until_idle``);
- **lag** is the end minus where the group stands: its committed offset, or the earliest
  offset where it has none, as a consumer of the group would start there
  (``group_positions``); per partition (``lag``, ``fetched_lag``) and summed
  (``committed_lag``).

confluent-kafka's errors become ``BrokerUnavailable`` here, where they enter darkroom
(``broker_errors``).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Generator, Iterator, Mapping, Sequence

from confluent_kafka import (
    OFFSET_BEGINNING,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from streams.config import Settings
from streams.errors import BrokerUnavailable
from streams.runtime.kafka import CLIENT_ERRORS, KafkaConsumer, make_admin, make_consumer

TIMEOUT_S = 15.0
IDLE_S = 2.0
"""Reading stops where no record has arrived for this long."""

Key = tuple[str, int]
"""A partition: (topic, partition)."""


@contextlib.contextmanager
def broker_errors(doing: str) -> Iterator[None]:
    """Translate confluent-kafka's errors into darkroom's where they enter: refused
    credentials and failed TLS as what they are (``CLIENT_ERRORS.check``), anything else
    ``BrokerUnavailable`` with the last connection error librdkafka reported."""
    try:
        yield
    except KafkaException as exc:
        CLIENT_ERRORS.check()
        err = exc.args[0] if exc.args else None
        reason = err.str() if isinstance(err, KafkaError) else str(exc)
        raise BrokerUnavailable(f"{doing}: {reason}{CLIENT_ERRORS.cause()}") from None
    except TimeoutError:  # an admin request's future that got no answer
        CLIENT_ERRORS.check()
        raise BrokerUnavailable(f"{doing}: no answer within {TIMEOUT_S:g}s{CLIENT_ERRORS.cause()}") from None


def reader_id() -> str:
    """A group id of its own for each throwaway reader: assigned, never subscribed, no commits."""
    return f"darkroom.offsets-{uuid.uuid4()}"


# --- reading records (where their content or timestamp is needed) -----------------------


def read_until_idle(
    settings: Settings, positions: Sequence[TopicPartition], group_id: str, idle_s: float = IDLE_S
) -> Generator[Message, None, None]:
    """Every record from ``positions`` on, until none has arrived for ``idle_s`` seconds.

    For what needs the records themselves (their content, their timestamps); where a
    partition ends is ``fetched_ends``'s answer, not this one's. The reader is assigned,
    never subscribed, and commits nothing, so ``group_id`` only names it. Meant for checks
    and operator commands, not for hot paths.
    """
    reader = make_consumer(settings, group_id)
    try:
        reader.assign(list(positions))
        last = time.monotonic()
        while time.monotonic() - last < idle_s:
            for msg in reader.consume(500, timeout=0.2):
                if not msg.error():
                    last = time.monotonic()
                    yield msg
    finally:
        reader.close()


# --- partition ends and beginnings ------------------------------------------------------


def fetched_end(consumer: KafkaConsumer, tp: TopicPartition) -> int | None:
    """The partition's end (high watermark) as the consumer's last fetch answer for it
    reported; None before any answer. Asks nothing of the broker."""
    marks = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), cached=True)
    return marks[1] if marks is not None and marks[1] >= 0 else None


def fetched_ends(settings: Settings, positions: Sequence[TopicPartition], timeout_s: float = 10.0) -> dict[Key, int]:
    """Each partition's end (high watermark) as a fetch answer reports it: right on both
    brokers, where the embedded one's ListOffsets end is not.

    A throwaway reader is assigned at ``positions`` (negative offsets: the beginning) and
    polled until a fetch has been answered for every partition; what it reads is dropped,
    and it is kept small (one batch a partition). Raises ``BrokerUnavailable`` if some
    partition got no answer within ``timeout_s``.
    """
    if not positions:
        return {}
    reader = make_consumer(
        settings, reader_id(), **{"max.partition.fetch.bytes": 65536, "queued.max.messages.kbytes": 1024}
    )
    try:
        starts = [(tp, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING) for tp in positions]
        reader.assign([TopicPartition(tp.topic, tp.partition, offset) for tp, offset in starts])
        ends: dict[Key, int] = {}
        deadline = time.monotonic() + timeout_s
        while len(ends) < len(positions):
            if time.monotonic() > deadline:
                missing = len(positions) - len(ends)
                raise BrokerUnavailable(f"no fetch answer for {missing} partitions within {timeout_s:g}s")
            reader.consume(100, timeout=0.1)
            for tp in positions:
                if (end := fetched_end(reader, tp)) is not None:
                    ends[(tp.topic, tp.partition)] = end
        return ends
    except KafkaException as exc:
        raise BrokerUnavailable(f"cannot read partition ends: {exc}") from None
    finally:
        reader.close()


def end_offsets(settings: Settings, topic: str, partitions: Sequence[int]) -> dict[int, int]:
    """Each partition's end: the offset the next record will get (a fetched high watermark)."""
    with broker_errors(f"cannot look up the end of {topic}"):
        ends = fetched_ends(settings, [TopicPartition(topic, p) for p in partitions], TIMEOUT_S)
    return {p: ends[(topic, p)] for p in partitions}


def earliest_offsets(settings: Settings, topic: str, partitions: Sequence[int]) -> dict[int, int]:
    """Each partition's low watermark: the first offset retention has not removed yet.

    Right on both brokers; the embedded one keeps every record and answers 0.
    """
    found: dict[int, int] = {}
    with broker_errors(f"cannot look up the offsets of {topic}"):
        consumer = make_consumer(settings, reader_id())
        try:
            for p in partitions:
                marks = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=TIMEOUT_S, cached=False)
                if marks is None:
                    raise BrokerUnavailable(f"no watermark offsets for {topic} [{p}] within {TIMEOUT_S:g}s")
                found[p] = marks[0]
        finally:
            consumer.close()
    return found


def topic_partitions(admin: AdminClient, timeout_s: float = TIMEOUT_S) -> dict[str, list[int]]:
    """Every topic's partitions, from the whole topic list: asking for one topic by name
    would create it on a broker that auto-creates topics (the embedded one does). Topics
    the broker reports an error for are left out. Callers translate errors
    (``broker_errors``) with what they were doing."""
    meta = admin.list_topics(timeout=timeout_s)
    return {name: sorted(t.partitions) for name, t in meta.topics.items() if t.error is None and t.partitions}


# --- time lookups -----------------------------------------------------------------------


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
    it stops at the first record at or after ``ts_ms``, or at the partition's end.
    """
    found: dict[int, int | None] = dict.fromkeys(partitions)
    hints = _time_hints(settings, topic, partitions, ts_ms)
    ends = end_offsets(settings, topic, [p for p in partitions if hints[p] >= 0])
    pending = {p for p, end in ends.items() if hints[p] < end}
    if not pending:
        return found
    start = [TopicPartition(topic, p, hints[p]) for p in sorted(pending)]
    with (
        broker_errors(f"cannot read {topic}"),
        contextlib.closing(read_until_idle(settings, start, reader_id())) as records,
    ):
        for msg in records:
            partition, offset = msg.partition(), msg.offset()
            if partition not in pending or offset is None:
                continue
            if msg.timestamp()[1] >= ts_ms:
                found[partition] = offset
            if found[partition] is not None or offset + 1 >= ends[partition]:
                pending.discard(partition)
                if not pending:
                    break
    return found


# --- where groups stand, and their lag --------------------------------------------------


def committed(admin: AdminClient, group: str, partitions: Sequence[TopicPartition] | None = None) -> dict[Key, int]:
    """The group's committed offsets by (topic, partition), of ``partitions`` or of every
    partition it committed on; partitions without one are left out."""
    request = ConsumerGroupTopicPartitions(group, list(partitions) if partitions else None)
    answer = admin.list_consumer_group_offsets([request], request_timeout=TIMEOUT_S)[group].result(TIMEOUT_S)
    for tp in answer.topic_partitions:
        if tp.error is not None:
            raise BrokerUnavailable(
                f"cannot read group {group}'s offset of {tp.topic} [{tp.partition}]: {tp.error.str()}"
            )
    return {(tp.topic, tp.partition): tp.offset for tp in answer.topic_partitions if tp.offset >= 0}


def group_positions(
    settings: Settings, admin: AdminClient, group: str, partitions: Mapping[str, Sequence[int]]
) -> dict[Key, int]:
    """Where ``group`` stands on each of ``partitions`` (topic → partitions): its committed
    offset, or where it has none, the partition's earliest offset (a consumer of the group
    would start there)."""
    with broker_errors(f"cannot read group {group}'s offsets"):
        found = committed(admin, group)
    positions: dict[Key, int] = {}
    for topic, parts in partitions.items():
        missing = [p for p in parts if (topic, p) not in found]
        earliest = earliest_offsets(settings, topic, missing) if missing else {}
        positions.update({(topic, p): found[(topic, p)] if p not in earliest else earliest[p] for p in parts})
    return positions


def lag(ends: Mapping[Key, int], positions: Mapping[Key, int]) -> dict[Key, int]:
    """Per partition of ``positions`` whose end is known: the records after the position
    (0 at or past the end), in (topic, partition) order."""
    return {key: max(0, ends[key] - position) for key, position in sorted(positions.items()) if key in ends}


def fetched_lag(consumer: KafkaConsumer, positions: Mapping[Key, int]) -> dict[Key, int]:
    """``lag`` with the ends the consumer's own fetches brought (no request to the broker);
    partitions it has not fetched yet are left out. For a worker's view of its assignment:
    a partition it stopped fetching keeps the last end it saw."""
    ends = {key: end for key in positions if (end := fetched_end(consumer, TopicPartition(*key))) is not None}
    return lag(ends, positions)


def committed_lag(settings: Settings, group: str, topics: Sequence[str]) -> int:
    """Records after ``group``'s positions (``group_positions``) on every partition of
    ``topics``, summed; a topic the broker does not list counts none."""
    admin = make_admin(settings)
    with broker_errors(f"cannot look up the partitions of {', '.join(topics)}"):
        listed = topic_partitions(admin)
    positions = group_positions(settings, admin, group, {t: listed.get(t, []) for t in topics})
    ends = fetched_ends(settings, [TopicPartition(t, p, offset) for (t, p), offset in positions.items()], TIMEOUT_S)
    return sum(lag(ends, positions).values())
