"""The one consume → decode → process → produce → commit loop.

Every consumer group of darkroom (ingest, each operation) is this loop with a different
decoder and handler. Records are taken in small batches (what is already fetched, up to
``batch_size``); the input offsets are committed synchronously only after every record the
handlers returned was acknowledged by the broker (``streams.runtime.kafka.deliver``), so a worker
killed at any moment loses nothing; a kill costs at most one batch of redelivered records,
and handlers make duplicates harmless (deterministic ids, keys and reused outputs).
Records that cannot be decoded go to the dead-letter topic with the reason in headers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from processors.errors import BrokerUnavailable, UndecodableEvent
from streams.config import Settings
from streams.runtime.kafka import Record, deliver, make_consumer, make_producer
from streams.runtime.topics import DEAD_LETTER

_POLL_WHILE_BUSY_S = 1.0
"""How often a long batch's loop polls its paused consumer."""

Event = dict[str, Any]
Decoder = Callable[[bytes | None, str], Event]
Handler = Callable[[Event, Any], list[Record]]
"""Turns one decoded event into the records to produce; gets a bound structlog logger."""
BatchWriter = Callable[[list[tuple["Received", Event]], Any], None]
"""A sink: makes a whole batch of decoded events durable (one transaction) before returning."""


@dataclass(frozen=True)
class Received:
    """A consumed record; topic, partition and offset are always set on those."""

    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes | None

    @classmethod
    def of(cls, msg: Message) -> Received:
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        if topic is None or partition is None or offset is None:
            raise BrokerUnavailable("consumed a record without a position")
        return cls(topic, partition, offset, msg.key() or b"", msg.value())


@dataclass(frozen=True)
class WorkerSpec:
    """One consumer group: its topics, its decoder, and either a per-record handler or a sink."""

    name: str
    group_id: str
    topics: tuple[str, ...]
    decode: Decoder
    handle: Handler | None = None
    write: BatchWriter | None = None
    max_batch: int | None = None
    """Caps ``Settings.batch_size`` for slow handlers, so a crash repeats little work."""
    prefetch: Callable[[Event], None] | None = None
    """Given the next event of the batch while ``handle`` works on the current one, so the
    next input's storage reads overlap the current computation (at most one ahead)."""


def _positions(batch: list[Received], *, first: bool) -> list[TopicPartition]:
    """Per partition: the first offset of the batch (to re-read) or the next one (to commit)."""
    positions: dict[tuple[str, int], int] = {}
    for msg in batch:
        key = (msg.topic, msg.partition)
        if first:
            positions.setdefault(key, msg.offset)
        else:
            positions[key] = msg.offset + 1
    return [TopicPartition(topic, partition, offset) for (topic, partition), offset in positions.items()]


class Worker:
    def __init__(self, settings: Settings, spec: WorkerSpec) -> None:
        self.settings = settings
        self.spec = spec
        self.name = f"worker-{spec.name}"
        self.log = structlog.get_logger("darkroom.worker").bind(worker=spec.name, group=spec.group_id)

    def run(self, stop: threading.Event) -> None:
        """Process records until ``stop`` is set; the batch in hand is always finished."""
        consumer = make_consumer(self.settings, self.spec.group_id)
        producer = make_producer(self.settings)
        busy = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self.spec.name}-batch")
        consumer.subscribe(list(self.spec.topics))
        self.log.info("worker started")
        try:
            while not stop.is_set():
                batch = self._next_batch(consumer)
                if not batch:
                    continue
                try:
                    deliver(producer, self._process_in_group(consumer, busy, batch))
                except BrokerUnavailable as exc:
                    # Not acknowledged: commit nothing; read the same records again later.
                    self.log.warning("output not delivered; will retry", error=exc.message)
                    for tp in _positions(batch, first=True):
                        consumer.seek(tp)
                    stop.wait(1.0)
                    continue
                self._commit(consumer, batch)
        finally:
            busy.shutdown()
            producer.flush(10)
            consumer.close()  # leaves the group so partitions move without waiting for a timeout
            self.log.info("worker stopped")

    def _next_batch(self, consumer: Consumer) -> list[Received]:
        """Wait up to 0.5 s for one record, then take what is already fetched (up to batch_size).

        One delivery wait and one commit per batch instead of per record: the guarantee
        is the same (commit after delivery), the broker round trips are shared.
        """
        first = consumer.poll(0.5)
        if first is None:
            return []
        polled = [first]
        size = min(self.settings.batch_size, self.spec.max_batch or self.settings.batch_size)
        if size > 1:
            polled += consumer.consume(num_messages=size - 1, timeout=0)
        batch = []
        for msg in polled:
            error = msg.error()
            if error is not None:
                self._on_error(error)
            else:
                batch.append(Received.of(msg))
        return batch

    def _process_in_group(self, consumer: Consumer, busy: ThreadPoolExecutor, batch: list[Received]) -> list[Record]:
        """``_process`` the batch, keeping the consumer in its group however long that takes.

        The batch runs on a helper thread; if it is not done within half of
        ``max.poll.interval.ms``, the consumer's partitions are paused and the consumer is
        polled every ``_POLL_WHILE_BUSY_S`` until it is, which restarts that interval (an
        upscale on CPU can run for many minutes) and serves rebalances. A record a new
        assignment hands out meanwhile is sought back, to be read after the batch. Short
        batches never pause: a resumed partition is fetched afresh, which costs time.
        """
        future = busy.submit(self._process, batch)
        try:
            return future.result(timeout=self.settings.max_poll_interval_ms / 2000)
        except FutureTimeout:
            pass
        self.log.info("long batch; pausing partitions and polling to keep group membership")
        consumer.pause(consumer.assignment())
        try:
            while True:
                try:
                    return future.result(timeout=_POLL_WHILE_BUSY_S)
                except FutureTimeout:
                    self._put_back(consumer, consumer.poll(0))
        finally:
            consumer.resume(consumer.assignment())

    def _put_back(self, consumer: Consumer, msg: Message | None) -> None:
        """A record polled during a long batch (a rebalance assigned its partition): read it later."""
        if msg is None:
            return
        error = msg.error()
        if error is not None:
            self._on_error(error)
            return
        got = Received.of(msg)
        consumer.seek(TopicPartition(got.topic, got.partition, got.offset))
        consumer.pause([TopicPartition(got.topic, got.partition)])

    def _process(self, batch: list[Received]) -> list[Record]:
        """Decode each record (dead-lettering what cannot be), then handle or sink them."""
        records: list[Record] = []
        decoded: list[tuple[Received, Event]] = []
        for msg in batch:
            try:
                decoded.append((msg, self.spec.decode(msg.value, msg.topic)))
            except UndecodableEvent as exc:
                self.log.bind(topic=msg.topic, partition=msg.partition, offset=msg.offset).warning(
                    "undecodable record sent to dead-letter topic", error=exc.message
                )
                records.append(self._dead_letter(msg, exc))
        if self.spec.handle is None:
            if decoded and self.spec.write is not None:
                started = time.perf_counter()
                self.spec.write(decoded, self.log)
                self.log.info(
                    "batch written", records=len(decoded), ms=round((time.perf_counter() - started) * 1000, 1)
                )
            return records
        for i, (msg, event) in enumerate(decoded):
            if self.spec.prefetch is not None and i + 1 < len(decoded):
                self.spec.prefetch(decoded[i + 1][1])
            log = self.log.bind(
                topic=msg.topic,
                partition=msg.partition,
                offset=msg.offset,
                image_id=event.get("image_id"),
                event_id=event.get("event_id"),
            )
            started = time.perf_counter()
            emitted = self.spec.handle(event, log)
            log.info(
                "processed", ms=round((time.perf_counter() - started) * 1000, 1), emitted=[r.topic for r in emitted]
            )
            records.extend(emitted)
        return records

    def _dead_letter(self, msg: Received, exc: UndecodableEvent) -> Record:
        return Record(
            topic=self.settings.topic(DEAD_LETTER),
            key=msg.key.decode("utf-8", "replace"),
            value=msg.value or b"",
            headers=(
                ("darkroom-error-code", exc.code.encode()),
                ("darkroom-error-message", exc.message.encode()),
                ("darkroom-source-topic", msg.topic.encode()),
                ("darkroom-source-partition", str(msg.partition).encode()),
                ("darkroom-source-offset", str(msg.offset).encode()),
                ("darkroom-consumer-group", self.spec.group_id.encode()),
            ),
        )

    def _commit(self, consumer: Consumer, batch: list[Received]) -> None:
        try:
            consumer.commit(offsets=_positions(batch, first=False), asynchronous=False)
        except KafkaException as exc:  # e.g. the partitions were revoked in a rebalance
            # The records will be redelivered to the partitions' new owner; handlers are
            # idempotent, so this costs duplicates, never a loss.
            self.log.warning("commit failed; records may be redelivered", error=str(exc))

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            raise BrokerUnavailable(f"fatal consumer error: {err.str()}")
        if err.code() != KafkaError._PARTITION_EOF:
            self.log.warning("consumer error", error=err.str())
