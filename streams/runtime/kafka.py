"""confluent-kafka clients configured once, and the one way to produce durably.

``deliver`` returns only after the broker acknowledged every record (acks=all,
idempotent producer): callers commit input offsets after it, never before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, Message, Producer

from processors.errors import BrokerUnavailable
from streams.config import Settings


@dataclass(frozen=True)
class Record:
    """A record to produce; ``key`` is the image id."""

    topic: str
    key: str
    value: bytes
    headers: Sequence[tuple[str, bytes]] = field(default_factory=tuple)


def make_producer(settings: Settings) -> Producer:
    return Producer(
        {
            "bootstrap.servers": settings.bootstrap_servers(),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "delivery.timeout.ms": 30_000,
            "message.max.bytes": 4 * 1024 * 1024,
        }
    )


def make_consumer(settings: Settings, group_id: str, **extra: object) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers(),
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": settings.session_timeout_ms,
            "heartbeat.interval.ms": max(500, settings.session_timeout_ms // 5),
            "max.poll.interval.ms": settings.max_poll_interval_ms,
            **extra,
        }
    )


def deliver(producer: Producer, records: Sequence[Record], timeout_s: float = 60.0) -> None:
    """Produce ``records`` and wait for every delivery report; raise if any failed."""
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            errors.append(err)

    for rec in records:
        producer.produce(
            rec.topic, key=rec.key.encode(), value=rec.value, headers=list(rec.headers), on_delivery=on_delivery
        )
    remaining = producer.flush(timeout_s)
    if errors or remaining:
        reason = errors[0].str() if errors else f"{remaining} records still queued after {timeout_s}s"
        raise BrokerUnavailable(f"Kafka did not acknowledge the output: {reason}")
