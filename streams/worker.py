"""The one consume → decode → process → produce → commit loop.

Every consumer group of darkroom (ingest, each operation) is this loop with a different
decoder and handler. The input offset is committed synchronously only after every record
the handler returned was acknowledged by the broker (``streams.kafka.deliver``), so a
worker killed at any moment loses nothing; its only duplicate window is between
delivery and commit, and handlers make duplicates harmless (deterministic ids and keys).
Records that cannot be decoded go to the dead-letter topic with the reason in headers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from confluent_kafka import KafkaError, Message, TopicPartition

from processors.errors import BrokerUnavailable, UndecodableEvent
from streams.config import Settings
from streams.kafka import Record, deliver, make_consumer, make_producer
from streams.topics import DEAD_LETTER

Event = dict[str, Any]
Decoder = Callable[[bytes | None, str], Event]
Handler = Callable[[Event, Any], list[Record]]
"""Turns one decoded event into the records to produce; gets a bound structlog logger."""


@dataclass(frozen=True)
class WorkerSpec:
    name: str
    group_id: str
    topic: str
    decode: Decoder
    handle: Handler


class Worker:
    def __init__(self, settings: Settings, spec: WorkerSpec) -> None:
        self.settings = settings
        self.spec = spec
        self.log = structlog.get_logger("darkroom.worker").bind(
            worker=spec.name, group=spec.group_id, topic=spec.topic
        )

    def run(self, stop: threading.Event) -> None:
        """Process records until ``stop`` is set; the record in hand is always finished."""
        consumer = make_consumer(self.settings, self.spec.group_id)
        producer = make_producer(self.settings)
        consumer.subscribe([self.spec.topic])
        self.log.info("worker started")
        try:
            while not stop.is_set():
                msg = consumer.poll(0.5)
                if msg is None:
                    continue
                if msg.error():
                    self._on_error(msg.error())
                    continue
                try:
                    records = self._handle(msg)
                    deliver(producer, records)
                except BrokerUnavailable as exc:
                    # Not acknowledged: do not commit; read the same record again later.
                    self.log.warning("output not delivered; will retry", error=exc.message, offset=msg.offset())
                    consumer.seek(TopicPartition(msg.topic(), msg.partition(), msg.offset()))
                    stop.wait(1.0)
                    continue
                self._commit(consumer, msg)
        finally:
            producer.flush(10)
            consumer.close()  # leaves the group so partitions move without waiting for a timeout
            self.log.info("worker stopped")

    def _handle(self, msg: Message) -> list[Record]:
        log = self.log.bind(partition=msg.partition(), offset=msg.offset())
        try:
            event = self.spec.decode(msg.value(), msg.topic())
        except UndecodableEvent as exc:
            log.warning("undecodable record sent to dead-letter topic", error=exc.message)
            return [self._dead_letter(msg, exc)]
        log = log.bind(image_id=event.get("image_id"), event_id=event.get("event_id"))
        started = time.perf_counter()
        records = self.spec.handle(event, log)
        log.info("processed", ms=round((time.perf_counter() - started) * 1000, 1), emitted=[r.topic for r in records])
        return records

    def _dead_letter(self, msg: Message, exc: UndecodableEvent) -> Record:
        key = msg.key() or b""
        return Record(
            topic=self.settings.topic(DEAD_LETTER),
            key=key.decode("utf-8", "replace"),
            value=msg.value() or b"",
            headers=(
                ("darkroom-error-code", exc.code.encode()),
                ("darkroom-error-message", exc.message.encode()),
                ("darkroom-source-topic", msg.topic().encode()),
                ("darkroom-source-partition", str(msg.partition()).encode()),
                ("darkroom-source-offset", str(msg.offset()).encode()),
                ("darkroom-consumer-group", self.spec.group_id.encode()),
            ),
        )

    def _commit(self, consumer: Any, msg: Message) -> None:
        offset = TopicPartition(msg.topic(), msg.partition(), msg.offset() + 1)
        try:
            consumer.commit(offsets=[offset], asynchronous=False)
        except Exception as exc:  # confluent_kafka.KafkaException, e.g. after a rebalance
            # The record will be redelivered to the partition's new owner; handlers are
            # idempotent, so this costs a duplicate, never a loss.
            self.log.warning("commit failed; record may be redelivered", error=str(exc), offset=msg.offset())

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            raise BrokerUnavailable(f"fatal consumer error: {err.str()}")
        if err.code() != KafkaError._PARTITION_EOF:
            self.log.warning("consumer error", error=err.str())
