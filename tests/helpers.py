"""Test-side Kafka helpers: read whole topics with a fresh consumer, produce raw bytes."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from streams.config import Settings
from streams.runtime.kafka import Record, deliver, make_consumer, make_producer
from streams.runtime.offsets import fetched_end
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

    Stops when ``expect`` records arrived, every partition has been read to the end its
    last fetch answer reported, and nothing new came for ``idle_s`` seconds; or at
    ``timeout_s``. (Idleness alone ended a read on a busy machine before the first fetch
    was answered, and returned nothing.)
    """
    consumer = make_consumer(settings, f"test-reader-{uuid.uuid4()}")
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        partitions = [TopicPartition(topic, p) for p in meta.partitions]
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])

        def at_the_end() -> bool:
            for tp in consumer.position(partitions):
                end = fetched_end(consumer, tp)
                if end is None or (end > 0 and tp.offset < end):
                    return False
            return True

        out: list[Consumed] = []
        deadline = time.monotonic() + timeout_s
        last = time.monotonic()
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                if len(out) >= expect and time.monotonic() - last > idle_s and at_the_end():
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


class PrivatePostgres:
    """A PostgreSQL cluster of a test session's own: initdb in a temporary directory, run
    as the ``postgres`` user on a free loopback port. A test can stop and start it — a
    real outage — without touching the machine's cluster that every other test uses."""

    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.data = root / "data"
        self.bin = next(Path("/usr/lib/postgresql").iterdir()) / "bin"
        root.mkdir(parents=True, exist_ok=True)
        shutil.chown(root, "postgres")
        self._as_postgres("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def _as_postgres(self, tool: str, *args: str) -> None:
        as_root = os.geteuid() == 0
        command = [*(["runuser", "-u", "postgres", "--"] if as_root else []), str(self.bin / tool), *args]
        subprocess.run(command, check=True, capture_output=True, cwd=self.root)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "start")

    def stop(self) -> None:
        self._as_postgres("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"


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


def final_image(http: httpx.Client, url: str, event_id: str | None = None, timeout_s: float = 90) -> dict[str, Any]:
    """The HTTP API's image at ``url`` once it is completed or failed (by ``event_id``'s
    upload, when given), polled."""
    deadline = time.monotonic() + timeout_s
    while True:
        image: dict[str, Any] = http.get(url).json()
        if image["status"] in {"completed", "failed"} and event_id in (None, image["upload_event_id"]):
            return image
        assert time.monotonic() < deadline, image
        time.sleep(0.2)
