"""Topic names and provisioning. Every record is keyed by image id (per-image ordering)."""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from processors import KNOWN_OPERATIONS
from processors.errors import BrokerUnavailable
from streams.config import Settings

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
