"""Test-side Kafka helpers: read whole topics with a fresh consumer, produce raw bytes."""

from __future__ import annotations

import subprocess
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from streams.config import Settings
from streams.runtime.kafka import Record, deliver, make_consumer, make_producer
from streams.runtime.topics import COMPLETED
from streams.wire.events import Serdes, derived_id


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


def postgres(action: str) -> None:
    """``start`` or ``stop`` the machine's PostgreSQL cluster: a real outage of the database."""
    version = next(Path("/etc/postgresql").iterdir()).name
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action], check=True, capture_output=True
    )


def completion(settings: Settings, serdes: Serdes, image_id: str) -> Record:
    """A completion event of ``image_id`` (one thumbnail step, no outputs), ready to produce."""
    upload_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    event = {
        "event_id": derived_id(upload_id, "completed"),
        "upload_event_id": upload_id,
        "image_id": image_id,
        "bucket": "darkroom",
        "source_key": f"uploads/{image_id}.jpg",
        "pipeline": [{"operation": "thumbnail", "params": {}}],
        "outputs": [],
        "timings": [],
        "callback_url": None,
        "tenant": None,
        "submitted_at": now,
        "completed_at": now,
    }
    topic = settings.topic(COMPLETED)
    return Record(topic, image_id, serdes.completed.encode(event, topic))
