"""Topic names and provisioning. Every record is keyed by image id (per-image ordering)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Generator, Sequence

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import NewTopic

from processors import KNOWN_OPERATIONS
from processors.errors import BrokerUnavailable
from streams.config import Settings
from streams.runtime.kafka import make_admin, make_consumer

UPLOADED = "images.uploaded"
COMPLETED = "images.completed"
FAILED = "images.failed"
DEAD_LETTER = "images.deadletter"


def step_topic(operation: str) -> str:
    return f"images.step.{operation}"


def all_topics(settings: Settings) -> list[str]:
    names = [UPLOADED, COMPLETED, FAILED, DEAD_LETTER, *(step_topic(op) for op in KNOWN_OPERATIONS)]
    return [settings.topic(n) for n in names]


def ensure_topics(settings: Settings, timeout_s: float = 15.0) -> None:
    """Create every darkroom topic that does not exist yet (idempotent), and the topic MinIO
    writes notifications to when one is configured (named as given: MinIO names it too)."""
    admin = make_admin(settings)
    try:
        existing = set(admin.list_topics(timeout=timeout_s).topics)
    except KafkaException as exc:
        raise BrokerUnavailable(f"cannot reach Kafka at {settings.bootstrap_servers()}: {exc}") from None
    wanted = [*all_topics(settings), *([settings.notifications_topic] if settings.notifications_topic else [])]
    missing = [t for t in wanted if t not in existing]
    if not missing:
        return
    futures = admin.create_topics(
        [NewTopic(t, settings.partitions, settings.replication_factor) for t in missing],
        operation_timeout=timeout_s,
        request_timeout=timeout_s,
    )
    for topic, future in futures.items():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise BrokerUnavailable(f"cannot create topic {topic}: {exc}") from None


def read_until_idle(
    settings: Settings, positions: Sequence[TopicPartition], group_id: str, idle_s: float = 2.0
) -> Generator[Message, None, None]:
    """Every record from ``positions`` on, until none has arrived for ``idle_s`` seconds.

    Reading is how darkroom finds where partitions end: the embedded broker's end offset
    (ListOffsets) is wrong, the records it serves are right. The reader is assigned, never
    subscribed, and commits nothing, so ``group_id`` only names it. Meant for checks and
    operator commands, not for hot paths.
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


def fetched_ends(
    settings: Settings, positions: Sequence[TopicPartition], timeout_s: float = 10.0
) -> dict[tuple[str, int], int]:
    """Each partition's end (high watermark) as a fetch answer reports it: right on both
    brokers, where the embedded one's ListOffsets end is not.

    A throwaway reader is assigned at ``positions`` (negative offsets: the beginning) and
    polled until a fetch has been answered for every partition; what it reads is dropped,
    and it is kept small (one batch a partition). Raises ``BrokerUnavailable`` if some
    partition got no answer within ``timeout_s``.
    """
    reader = make_consumer(
        settings,
        f"darkroom.ends-{uuid.uuid4()}",
        **{"max.partition.fetch.bytes": 65536, "queued.max.messages.kbytes": 1024},
    )
    try:
        starts = [(tp, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING) for tp in positions]
        reader.assign([TopicPartition(tp.topic, tp.partition, offset) for tp, offset in starts])
        ends: dict[tuple[str, int], int] = {}
        deadline = time.monotonic() + timeout_s
        while len(ends) < len(positions):
            if time.monotonic() > deadline:
                missing = len(positions) - len(ends)
                raise BrokerUnavailable(f"no fetch answer for {missing} partitions within {timeout_s:g}s")
            reader.consume(100, timeout=0.1)
            for tp in positions:
                marks = reader.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), cached=True)
                if marks is not None and marks[1] >= 0:  # a fresh reader has none before its first answer
                    ends[(tp.topic, tp.partition)] = marks[1]
        return ends
    except KafkaException as exc:
        raise BrokerUnavailable(f"cannot read partition ends: {exc}") from None
    finally:
        reader.close()


def committed_lag(settings: Settings, group: str, topics: Sequence[str], idle_s: float = 2.0) -> int:
    """Records after each partition's committed offset of ``group``, counted by reading them."""
    probe = make_consumer(settings, group)
    try:
        positions = [
            TopicPartition(topic, tp.partition, max(tp.offset, 0))
            for topic in topics
            for tp in probe.committed(
                [TopicPartition(topic, p) for p in probe.list_topics(topic, timeout=10).topics[topic].partitions],
                timeout=10,
            )
        ]
    finally:
        probe.close()
    return sum(1 for _ in read_until_idle(settings, positions, f"{group}.lag-{uuid.uuid4()}", idle_s))
