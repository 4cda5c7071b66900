"""Topic names and provisioning. Every record is keyed by image id (per-image ordering)."""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import NewTopic

from processors import KNOWN_OPERATIONS
from streams.config import Settings
from streams.runtime.kafka import make_admin
from streams.runtime.offsets import broker_errors

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
    with broker_errors(f"cannot reach Kafka at {settings.bootstrap_servers()}"):
        existing = set(admin.list_topics(timeout=timeout_s).topics)
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
        with broker_errors(f"cannot create topic {topic}"):
            try:
                future.result(timeout=timeout_s)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
