"""Topic names and provisioning. Every record is keyed by image id (per-image ordering)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from processors import KNOWN_OPERATIONS
from processors.errors import BrokerUnavailable
from streams.config import Settings
from streams.runtime.kafka import make_consumer

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
    """Create every darkroom topic that does not exist yet (idempotent)."""
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers()})
    try:
        existing = set(admin.list_topics(timeout=timeout_s).topics)
    except KafkaException as exc:
        raise BrokerUnavailable(f"cannot reach Kafka at {settings.bootstrap_servers()}: {exc}") from None
    missing = [t for t in all_topics(settings) if t not in existing]
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


def committed_lag(settings: Settings, group: str, topics: Sequence[str], idle_s: float = 2.0) -> int:
    """Records after each partition's committed offset of ``group``, counted by reading them.

    Read, not computed from ListOffsets: the embedded broker's end offset is wrong, the
    records it serves are right. Meant for checks and benchmarks, not for hot paths.
    """
    total = 0
    probe = make_consumer(settings, group)
    try:
        for topic in topics:
            parts = probe.list_topics(topic, timeout=10).topics[topic].partitions
            for tp in probe.committed([TopicPartition(topic, p) for p in parts], timeout=10):
                reader = make_consumer(settings, f"{group}.lag-{uuid.uuid4()}")
                try:
                    reader.assign([TopicPartition(topic, tp.partition, max(tp.offset, 0))])
                    last = time.monotonic()
                    while time.monotonic() - last < idle_s:
                        msg = reader.poll(0.2)
                        if msg is not None and not msg.error():
                            total += 1
                            last = time.monotonic()
                finally:
                    reader.close()
    finally:
        probe.close()
    return total
