"""Topic names and provisioning. Every record is keyed by image id (per-image ordering)."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from processors import KNOWN_OPERATIONS
from streams.config import Settings
from streams.errors import BrokerUnavailable
from streams.runtime.kafka import CLIENT_ERRORS, make_admin
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


def metadata(admin: AdminClient, settings: Settings, timeout_s: float) -> Any:
    """The cluster's metadata (topics and partitions), asked in short tries: between them
    a refused password or a certificate that does not verify raises at once, in one line,
    instead of the whole timeout passing (``CLIENT_ERRORS``)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return admin.list_topics(timeout=max(0.1, min(1.0, deadline - time.monotonic())))
        except KafkaException as exc:
            CLIENT_ERRORS.check()
            if time.monotonic() >= deadline:
                reason = exc.args[0].str() if exc.args and isinstance(exc.args[0], KafkaError) else str(exc)
                raise BrokerUnavailable(
                    f"cannot reach Kafka at {settings.bootstrap_servers()}: {reason}{CLIENT_ERRORS.cause()}"
                ) from None


def ensure_topics(settings: Settings, timeout_s: float = 15.0) -> None:
    """Create every darkroom topic that does not exist yet (idempotent), and the topic MinIO
    writes notifications to when one is configured (named as given: MinIO names it too)."""
    admin = make_admin(settings)
    existing = set(metadata(admin, settings, timeout_s).topics)
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
