"""Test-side Kafka helpers: read whole topics with a fresh consumer, produce raw bytes."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from streams.config import Settings
from streams.runtime.kafka import Record, deliver, make_consumer, make_producer


@dataclass
class Consumed:
    topic: str
    key: str
    value: bytes
    headers: dict[str, bytes]


def read_topic(
    settings: Settings, topic: str, *, expect: int = 0, timeout_s: float = 30.0, idle_s: float = 3.0
) -> list[Consumed]:
    """Every record of ``topic`` from the beginning, by a consumer that commits nothing.

    Stops when ``expect`` records arrived and nothing new came for ``idle_s`` seconds,
    or at ``timeout_s``.
    """
    consumer = make_consumer(settings, f"test-reader-{uuid.uuid4()}")
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
        out: list[Consumed] = []
        deadline = time.monotonic() + timeout_s
        last = time.monotonic()
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                if len(out) >= expect and time.monotonic() - last > idle_s:
                    break
                continue
            last = time.monotonic()
            out.append(
                Consumed(msg.topic(), (msg.key() or b"").decode(), msg.value() or b"", dict(msg.headers() or []))
            )
        return out
    finally:
        consumer.close()


def produce(settings: Settings, topic: str, key: str, value: bytes) -> None:
    deliver(make_producer(settings), [Record(settings.topic(topic), key, value)])


def decode_all(records: list[Consumed], serde: Any) -> list[dict[str, Any]]:
    return [serde.decode(r.value, r.topic) for r in records]
