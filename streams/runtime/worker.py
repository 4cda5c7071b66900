"""The one consume → decode → process → produce → commit loop.

Every consumer group of darkroom (ingest, each operation, the result writer) is this
loop with a different decoder and handler or sink. Records are taken in small batches
(what is already fetched, up to ``batch_size``); input offsets are committed
synchronously only after every record the handlers returned was acknowledged by the
broker (``streams.runtime.kafka.deliver``), so a worker killed at any moment loses
nothing; a kill costs at most one batch of redelivered records, and handlers make
duplicates harmless (deterministic ids, keys and reused outputs).

What the loop does when something goes wrong, so that handlers need not:

- **Undecodable bytes** go to the dead-letter topic, key and value exactly as they came.
- **An outage** (``DependencyUnavailable``: object store, schema registry, database,
  broker) or refused credentials (``AccessRefused``) is nobody's fault in the record: the
  records before it are delivered and committed, the rest are sought back, the
  partitions are paused and the loop waits (``backoff_delay``: doubling from
  ``retry_backoff_s`` to ``retry_max_backoff_s``, jittered) while polling, so the
  consumer keeps its group membership; then it reads them again. A record whose handler
  has met outages for ``retry_timeout_s`` in all is finalized by the handler's ``fail``
  with the outage's retryable code; records that cannot be decoded or delivered yet (the
  registry or the broker is down) have no event to fail and wait, and so do sinks (no
  ``fail``), which never drop a final event.
- **A poison record** (a handler or sink raised something unexpected) is tried
  ``poison_attempts`` times with backoff, then failed through ``fail`` with
  ``processing_failed``, or dead-lettered with the reason; a failing sink batch is
  written record by record to find it. Its neighbours and other partitions keep moving.
- **A producer whose delivery failed is replaced** (``discard_producer``) before the batch
  is retried: one the library declares unusable (fatal, fenced) must be, and one the
  broker silently keeps refusing (fenced on the embedded broker, seen only as timeouts)
  cannot be told apart from an outage. After ``_MAX_PRODUCER_FAILURES`` unusable ones in
  a row the worker gives up, leaves its group so its partitions move, and the supervisor
  restarts it.
- **An output the broker refuses for good** (too large, not authorised) fails its input
  with ``output_rejected`` (or dead-letters it), instead of being retried forever.

As it goes the loop reports to ``streams.observe``: records consumed and produced, what
it waits on, and each assigned partition's lag (``_observe``), from which ``/healthz``
tells a stuck worker from a paused one.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import structlog
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from processors.errors import ConfigurationError, DarkroomError, ProcessingFailed
from streams.config import Settings
from streams.errors import (
    AccessRefused,
    BrokerUnavailable,
    DependencyUnavailable,
    OutputRejected,
    UndecodableEvent,
    WorkerStalled,
)
from streams.observe import metrics
from streams.observe.health import HEALTH, LoopState
from streams.runtime.kafka import (
    ConsumerFactory,
    KafkaConsumer,
    KafkaMessage,
    KafkaProducer,
    ProducerFailed,
    Record,
    deliver,
    discard_producer,
    make_consumer,
    make_producer,
)
from streams.runtime.offsets import fetched_lag
from streams.runtime.outage import Outage
from streams.runtime.retry import backoff_delay
from streams.runtime.topics import DEAD_LETTER
from streams.runtime.watchdog import Stall, Watchdog

_POLL_WHILE_BUSY_S = 1.0
"""How often a long batch's (or a waiting worker's) loop polls its paused consumer."""
_MAX_PRODUCER_FAILURES = 3
"""Producers rebuilt in a row without one successful delivery before the worker gives up."""
_OBSERVE_EVERY_S = 1.0
"""How often the loop reports its lag and beat (``_observe``)."""
_MAX_REBUILDS = 3
"""Rebuilds after a stall without a commit in between before the worker gives up and exits."""

OUTAGES = (DependencyUnavailable, AccessRefused)
"""Errors that pause a worker instead of failing the record in hand."""


class _Stopping(DependencyUnavailable):
    """Raised instead of finishing a record's retries when the worker is told to stop:
    the record stays uncommitted and is read again, never failed early."""


Event = Mapping[str, Any]
"""Any decoded record, as the loop sees it: it reads ``image_id`` and ``event_id`` for its
log lines and hands the rest to the spec's functions, typed as their records are
(``streams.wire.events``)."""
E = TypeVar("E", bound=Event)


@dataclass(frozen=True)
class Received:
    """A consumed record; topic, partition and offset are always set on those."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    @classmethod
    def of(cls, msg: KafkaMessage) -> Received:
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        if topic is None or partition is None or offset is None:
            raise BrokerUnavailable("consumed a record without a position")
        return cls(topic, partition, offset, msg.key(), msg.value())


@dataclass(frozen=True)
class WorkerSpec(Generic[E]):
    """One consumer group: its topics, its decoder, and either a per-record handler or a
    sink, all over one record type ``E``."""

    name: str
    group_id: str
    topics: tuple[str, ...]
    decode: Callable[[bytes | None, str], E]
    """Bytes → the record; raises ``UndecodableEvent`` (dead-lettered) or an outage (the registry)."""
    handle: Callable[[E, Any], list[Record]] | None = None
    """Turns one record into the records to produce; gets a bound structlog logger. Raises
    ``OUTAGES`` to pause; anything else unexpected makes the record a poison suspect."""
    write: Callable[[list[tuple[Received, E]], Any], None] | None = None
    """A sink: makes a whole batch of records durable (one transaction) before returning."""
    fail: Callable[[E, DarkroomError], list[Record]] | None = None
    """Finalizes an event the loop gives up on (poison, spent retry budget, refused output);
    without it such records are dead-lettered, or (outages) waited for indefinitely."""
    max_batch: int | None = None
    """Caps ``Settings.batch_size`` for slow handlers, so a crash repeats little work."""
    prefetch: Callable[[E], None] | None = None
    """Given the next event of the batch while ``handle`` works on the current one, so the
    next input's storage reads overlap the current computation (at most one ahead)."""


@dataclass
class _Done:
    """A record the batch finished with: the records it produces, and its event once decoded."""

    msg: Received
    records: list[Record]
    event: Any = None
    """The decoded record (the spec's type), None while undecodable."""


@dataclass
class _Outcome:
    """A batch's processed prefix, and where (and why) it stopped if an outage stopped it."""

    done: list[_Done] = field(default_factory=list)
    rest: list[Received] = field(default_factory=list)
    outage: DarkroomError | None = None


def _positions(batch: Sequence[Received], *, first: bool) -> list[TopicPartition]:
    """Per partition: the first offset of the batch (to re-read) or the next one (to commit)."""
    positions: dict[tuple[str, int], int] = {}
    for msg in batch:
        key = (msg.topic, msg.partition)
        if first:
            positions[key] = min(positions.get(key, msg.offset), msg.offset)
        else:
            positions[key] = max(positions.get(key, msg.offset + 1), msg.offset + 1)
    return [TopicPartition(topic, partition, offset) for (topic, partition), offset in positions.items()]


class Worker(Generic[E]):
    def __init__(
        self,
        settings: Settings,
        spec: WorkerSpec[E],
        producers: Callable[[Settings], KafkaProducer] = make_producer,
        consumers: ConsumerFactory = make_consumer,
    ) -> None:
        """``producers`` makes the worker's producer, again after one was declared unusable;
        ``consumers`` its consumer, again after a stall (both the seams tests plug into)."""
        self.settings = settings
        self.spec = spec
        self.producers = producers
        self.consumers = consumers
        self.name = f"worker-{spec.name}"
        self.log = structlog.get_logger("darkroom.worker").bind(worker=spec.name, group=spec.group_id)
        self._stop = threading.Event()
        self._waiting_since: dict[tuple[str, int, int], float] = {}
        """When each record stalled by an outage first stalled (its retry budget's start)."""
        self.outage = Outage(spec.name, settings, self.log)
        """The pause on an outage: its backoff, metrics, health and lines."""
        self.watchdog = Watchdog(settings, spec.group_id, self.log)
        self._free_since = time.monotonic()
        """Since the last commit, or the end of the last batch, outage wait or assignment:
        how long the loop has been free to make progress without any (the watchdog's clock)."""
        self._rebuilds = 0
        """Rebuilds after stalls since the last commit."""
        self.health: LoopState = LoopState(spec.name)
        self._committed: dict[tuple[str, int], int] = {}
        """Per assigned partition: the next offset to read after the group's committed position."""
        self._observed = 0.0
        self._busy = False
        """A batch is in hand (between taking it and committing it)."""
        self._holding = False
        """Inside ``_paused``: every assigned partition, and any newly assigned one, stays paused."""

    def run(self, stop: threading.Event) -> None:
        """Process records until ``stop`` is set; the batch in hand is always finished."""
        self._stop = stop
        self.health = self.outage.health = HEALTH.register(self.spec.name)
        metrics.worker_at_zero(self.spec.name, self.spec.group_id, self.spec.topics)  # increase() sees the first
        consumer = self._subscribed()
        producer = self.producers(self.settings)
        producer_failures = 0
        busy = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self.spec.name}-batch")
        self.log.info("worker started")
        try:
            while not stop.is_set():
                self._observe(consumer)
                stall = self.watchdog.check(consumer, time.monotonic() - self._free_since)
                if stall is not None:
                    consumer, producer = self._rebuilt(consumer, producer, stall)
                    continue
                batch = self._next_batch(consumer)
                if not batch:
                    continue
                metrics.IN_FLIGHT.labels(self.spec.name).set(len(batch))
                self._busy = True
                outcome = self._in_group(consumer, busy, batch)
                try:
                    self._deliver(producer, outcome.done)
                except OUTAGES as exc:  # the broker, or the registry the failure events need
                    if isinstance(exc, BrokerUnavailable):
                        discard_producer(producer)
                        producer = self.producers(self.settings)
                    if isinstance(exc, ProducerFailed):
                        producer_failures += 1
                        if producer_failures >= _MAX_PRODUCER_FAILURES:
                            raise
                        self.log.warning("producer unusable; building a new one", error=exc.message)
                    self._busy = False
                    self._wait_out(consumer, batch, exc)
                    continue
                producer_failures = 0
                self._produced(outcome.done)
                self._commit(consumer, [d.msg for d in outcome.done])
                self._busy = False
                metrics.IN_FLIGHT.labels(self.spec.name).set(len(outcome.rest))
                if outcome.outage is not None:
                    self._wait_out(consumer, outcome.rest, outcome.outage)
                else:
                    self.outage.over()
        finally:
            metrics.IN_FLIGHT.labels(self.spec.name).set(0)
            self.outage.over(stopping=True)
            for topic, partition in self._committed:
                metrics.CONSUMER_LAG.labels(self.spec.group_id, topic, str(partition)).set(0)
            HEALTH.unregister(self.health)
            busy.shutdown()
            with contextlib.suppress(KafkaException, SystemError):  # an unusable producer cannot flush
                producer.flush(10)
            consumer.close()  # leaves the group so partitions move without waiting for a timeout
            self.log.info("worker stopped")

    def _subscribed(self) -> KafkaConsumer:
        extra = (
            {"group.instance.id": f"{self.settings.instance_id}.{self.spec.name}"} if self.settings.instance_id else {}
        )
        consumer = self.consumers(self.settings, self.spec.group_id, **extra)
        consumer.subscribe(list(self.spec.topics), on_assign=self._on_assign)
        self.watchdog.restarted()
        self._free_since = time.monotonic()
        return consumer

    def _rebuilt(
        self, consumer: KafkaConsumer, producer: KafkaProducer, stall: Stall
    ) -> tuple[KafkaConsumer, KafkaProducer]:
        """A stalled worker's new clients: the consumer rejoins and reads again from the
        committed offsets (moved back first where they are past a partition's end). Raises
        ``WorkerStalled`` when rebuilding has not helped ``_MAX_REBUILDS`` times, so the
        process exits and its supervisor starts it afresh."""
        self._rebuilds += 1
        if self._rebuilds > _MAX_REBUILDS:
            raise WorkerStalled(f"{stall.reason}; still stalled after {_MAX_REBUILDS} rebuilds")
        self.health.stalled = stall.reason
        metrics.STALLS.labels(self.spec.name).inc()
        rewind = {f"{tp.topic} [{tp.partition}]": tp.offset for tp in stall.rewind}
        self.log.warning(
            "stalled; rebuilding the consumer and producer, reading again from the committed offsets",
            reason=stall.reason,
            rewind=rewind or None,
            rebuild=self._rebuilds,
        )
        if stall.rewind:
            try:
                consumer.commit(offsets=stall.rewind, asynchronous=False)
            except KafkaException as exc:  # asked again after the rebuild, as a member
                self.log.warning("could not move the committed offsets back", error=str(exc))
        consumer.close()
        discard_producer(producer)
        return self._subscribed(), self.producers(self.settings)

    def _on_assign(self, consumer: KafkaConsumer, partitions: list[TopicPartition]) -> None:
        """The group answered: the worker has joined (its share may be empty).

        librdkafka keeps a partition's pause through its loss and re-assignment, so each
        partition handed out is set as the loop wants it now: paused inside ``_paused``
        (whose end resumes it), fetching otherwise. Before, a partition lost while the
        worker waited out an outage came back paused after the wait and was never read."""
        if self._holding:
            consumer.pause(partitions)
        else:
            consumer.resume(partitions)
        self._free_since = time.monotonic()
        self.health.assigned(len(consumer.assignment()) + len(partitions), busy=self._busy)

    # -- reporting ------------------------------------------------------------------
    def _observe(self, consumer: KafkaConsumer) -> None:
        """Beat, and (at most every ``_OBSERVE_EVERY_S``) report each assigned partition's lag:
        the high watermark the last fetch brought minus the group's committed position. The
        embedded broker's ListOffsets end offset is wrong; the fetched watermark is not."""
        self.health.turned()
        now = time.monotonic()
        if now - self._observed < _OBSERVE_EVERY_S:
            return
        self._observed = now
        assignment = {(tp.topic, tp.partition): tp for tp in consumer.assignment()}
        for key in [k for k in self._committed if k not in assignment]:  # revoked: its new owner reports it
            metrics.CONSUMER_LAG.labels(self.spec.group_id, key[0], str(key[1])).set(0)
            del self._committed[key]
        unknown = [tp for key, tp in assignment.items() if key not in self._committed]
        if unknown:
            with contextlib.suppress(KafkaException):  # asked again on the next turn
                for tp in consumer.committed(unknown, timeout=2):
                    low = consumer.get_watermark_offsets(tp, cached=True)
                    start = low[0] if low is not None and low[0] >= 0 else 0
                    self._committed[(tp.topic, tp.partition)] = tp.offset if tp.offset >= 0 else start
        lags = fetched_lag(consumer, self._committed)
        for (topic, partition), lag in lags.items():
            metrics.CONSUMER_LAG.labels(self.spec.group_id, topic, str(partition)).set(lag)
        self.health.partitions, self.health.lag = len(assignment), sum(lags.values())

    def _produced(self, done: list[_Done]) -> None:
        for d in done:
            for record in d.records:
                metrics.RECORDS_PRODUCED.labels(self.spec.group_id, record.topic).inc()

    def _delay(self, attempt: int) -> float:
        return backoff_delay(attempt, self.settings.retry_backoff_s, self.settings.retry_max_backoff_s)

    # -- reading --------------------------------------------------------------------
    def _next_batch(self, consumer: KafkaConsumer) -> list[Received]:
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
                metrics.RECORDS_CONSUMED.labels(self.spec.group_id, batch[-1].topic).inc()
        return batch

    def _in_group(self, consumer: KafkaConsumer, busy: ThreadPoolExecutor, batch: list[Received]) -> _Outcome:
        """``_process`` the batch on the helper thread, keeping the consumer in its group however long it takes.

        If it is not done within half of ``max.poll.interval.ms``, the consumer's
        partitions are paused and the consumer is polled every ``_POLL_WHILE_BUSY_S``
        until it is, which restarts that interval (an upscale on CPU can run for many
        minutes) and serves rebalances. A record a new assignment hands out meanwhile is
        sought back, to be read after the batch. Short batches never pause: a resumed
        partition is fetched afresh, which costs time.
        """
        future = busy.submit(self._process, batch)
        try:
            deadline = time.monotonic() + self.settings.max_poll_interval_ms / 2000
            while (left := deadline - time.monotonic()) > 0:
                try:
                    return future.result(timeout=min(left, _OBSERVE_EVERY_S))
                except FutureTimeout:
                    self._observe(consumer)
            self.log.info("long batch; pausing partitions and polling to keep group membership")
            with self._paused(consumer):
                while True:
                    try:
                        return future.result(timeout=_POLL_WHILE_BUSY_S)
                    except FutureTimeout:
                        self._put_back(consumer, consumer.poll(0))
                        self._observe(consumer)
        finally:  # time in a batch is the handler's, not the watchdog's (health watches hung handlers)
            self._free_since = time.monotonic()

    @contextlib.contextmanager
    def _paused(self, consumer: KafkaConsumer) -> Iterator[None]:
        """Every assigned partition paused inside: the loop keeps polling (membership,
        rebalances) without taking records; what a new assignment hands out is put back."""
        self._holding = True
        consumer.pause(consumer.assignment())
        try:
            yield
        finally:
            self._holding = False
            consumer.resume(consumer.assignment())

    def _put_back(self, consumer: KafkaConsumer, msg: KafkaMessage | None) -> None:
        """A record polled while the partitions are paused (a rebalance assigned its partition): read it later."""
        if msg is None:
            return
        error = msg.error()
        if error is not None:
            self._on_error(error)
            return
        got = Received.of(msg)
        consumer.seek(TopicPartition(got.topic, got.partition, got.offset))
        consumer.pause([TopicPartition(got.topic, got.partition)])

    # -- processing -----------------------------------------------------------------
    def _process(self, batch: list[Received]) -> _Outcome:
        """Decode and handle (or sink) the batch in order, stopping at the first outage."""
        outcome = _Outcome()
        decoded: list[tuple[Received, E]] = []
        for i, msg in enumerate(batch):
            log = self.log.bind(topic=msg.topic, partition=msg.partition, offset=msg.offset)
            try:
                event = self.spec.decode(msg.value, msg.topic)
            except UndecodableEvent as exc:
                log.warning("undecodable record sent to dead-letter topic", error=exc.message)
                outcome.done.append(_Done(msg, [self._dead_letter(msg, exc)]))
                continue
            except OUTAGES as exc:
                outcome.rest, outcome.outage = batch[i:], exc
                break
            decoded.append((msg, event))
        if self.spec.handle is None:
            return self._sink(decoded, outcome)
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
            try:
                outcome.done.append(_Done(msg, self._handle(msg, event, log), event))
            except OUTAGES as exc:
                outcome.rest = [m for m, _ in decoded[i:]] + outcome.rest
                outcome.outage = exc
                break
        return outcome

    def _handle(self, msg: Received, event: E, log: Any) -> list[Record]:
        """One record through the handler: outages raise (unless its budget is spent), poison is isolated."""
        assert self.spec.handle is not None
        for attempt in range(1, self.settings.poison_attempts + 1):
            started = time.perf_counter()
            try:
                emitted = self.spec.handle(event, log)
            except OUTAGES as exc:
                return self._stalled(msg, event, exc, log)
            except DarkroomError as exc:  # a typed error the handler chose not to turn into an event
                return self._give_up(msg, event, exc, log)
            except Exception as exc:
                if attempt < self.settings.poison_attempts:
                    delay = self._delay(attempt)
                    log.warning("handler raised; retrying", attempt=attempt, error=type(exc).__name__, delay_s=delay)
                    if self._stop.wait(delay):
                        raise _Stopping("worker stopping") from None
                    continue
                log.error("handler raised on every attempt; failing the record", exc_info=True)
                error = ProcessingFailed(f"{self.spec.name} failed unexpectedly; the worker's log has the details")
                return self._give_up(msg, event, error, log)
            self._waiting_since.pop((msg.topic, msg.partition, msg.offset), None)
            log.info(
                "processed", ms=round((time.perf_counter() - started) * 1000, 1), emitted=[r.topic for r in emitted]
            )
            return emitted
        raise AssertionError("unreachable")  # pragma: no cover

    def _stalled(self, msg: Received, event: E, exc: DarkroomError, log: Any) -> list[Record]:
        """An outage hit this record: raise to pause, or finalize it once its retry budget is spent."""
        since = self._waiting_since.setdefault((msg.topic, msg.partition, msg.offset), time.monotonic())
        spent = time.monotonic() - since >= self.settings.retry_timeout_s
        if self.spec.fail is None or not spent or isinstance(exc, AccessRefused):
            raise exc
        log.warning("outage outlasted DARKROOM_RETRY_TIMEOUT_S; failing the record", error_code=exc.code)
        self._waiting_since.pop((msg.topic, msg.partition, msg.offset), None)
        return self.spec.fail(event, exc)

    def _give_up(self, msg: Received, event: E, error: DarkroomError, log: Any) -> list[Record]:
        log.warning("record failed", error_code=error.code, error=error.message)
        self._waiting_since.pop((msg.topic, msg.partition, msg.offset), None)
        if self.spec.fail is not None:
            return self.spec.fail(event, error)
        return [self._dead_letter(msg, error)]

    def _sink(self, decoded: list[tuple[Received, E]], outcome: _Outcome) -> _Outcome:
        """Write the decoded records as one batch; if it raises, one by one to isolate the poison."""
        if not decoded or self.spec.write is None:
            return outcome
        started = time.perf_counter()
        try:
            self.spec.write(decoded, self.log)
        except OUTAGES as exc:
            outcome.rest = [m for m, _ in decoded] + outcome.rest
            outcome.outage = exc
            return outcome
        except Exception as exc:
            if len(decoded) == 1:
                return self._sink_alone(decoded[0], outcome, exc)
            self.log.warning("batch write raised; writing record by record", error=type(exc).__name__)
            for i, item in enumerate(decoded):
                outcome = self._sink([item], outcome)
                if outcome.outage is not None:  # the record itself leads ``rest``; the later ones follow it
                    outcome.rest[1:1] = [m for m, _ in decoded[i + 1 :]]
                    return outcome
            return outcome
        outcome.done.extend(_Done(msg, [], event) for msg, event in decoded)
        self.log.info("batch written", records=len(decoded), ms=round((time.perf_counter() - started) * 1000, 1))
        return outcome

    def _sink_alone(self, item: tuple[Received, E], outcome: _Outcome, first: Exception) -> _Outcome:
        """One record that made the sink raise: retried with backoff, then dead-lettered with the reason."""
        assert self.spec.write is not None
        msg, event = item
        log = self.log.bind(topic=msg.topic, partition=msg.partition, offset=msg.offset, event_id=event.get("event_id"))
        error: Exception = first
        for attempt in range(1, self.settings.poison_attempts):
            if self._stop.wait(self._delay(attempt)):
                outcome.rest, outcome.outage = [msg, *outcome.rest], _Stopping("worker stopping")
                return outcome
            try:
                self.spec.write([item], log)
            except OUTAGES as exc:
                outcome.rest, outcome.outage = [msg, *outcome.rest], exc
                return outcome
            except Exception as exc:
                error = exc
                continue
            outcome.done.append(_Done(msg, [], event))
            return outcome
        log.error("sink raised on every attempt; dead-lettering the record", exc_info=error)
        reason = ProcessingFailed(f"{self.spec.name} could not store the record; the worker's log has the details")
        outcome.done.append(_Done(msg, [self._dead_letter(msg, reason)], event))
        return outcome

    # -- writing --------------------------------------------------------------------
    def _deliver(self, producer: KafkaProducer, done: list[_Done]) -> None:
        """Deliver every record the batch produced. A record the broker refuses for good
        makes its input fail with ``output_rejected``; if that is refused too, the input
        goes to the dead-letter topic; if even that is refused, it stays only in its topic."""
        dead_letters = self.settings.topic(DEAD_LETTER)
        while done:
            try:
                refused = deliver(producer, [r for d in done for r in d.records])
            except AccessRefused:
                raise
            except ConfigurationError as exc:
                # librdkafka's TLS hint ("incorrect security.protocol…") also comes with a broker
                # that restarts under a running worker: here it is waited out like an outage
                # (a worker misconfigured from the start fails at start, in one line)
                raise BrokerUnavailable(exc.message) from None
            owners = [d for d in done for _ in d.records]
            again: dict[int, _Done] = {}
            for index, reason in refused.items():
                d = owners[index]
                if id(d) in again:
                    continue
                error = OutputRejected(f"the broker refused an output record: {reason}")
                log = self.log.bind(topic=d.msg.topic, partition=d.msg.partition, offset=d.msg.offset)
                log.warning("output refused by the broker", error=error.message)
                if d.event is not None and self.spec.fail is not None:
                    again[id(d)] = _Done(d.msg, self.spec.fail(d.event, error))
                elif d.records[0].topic != dead_letters:
                    again[id(d)] = _Done(d.msg, [self._dead_letter(d.msg, error)])
                else:
                    log.error("dead-letter record refused too; the record stays only in its topic", error=reason)
            done = list(again.values())

    def _dead_letter(self, msg: Received, exc: DarkroomError) -> Record:
        metrics.DEAD_LETTERS.labels(self.spec.group_id, exc.code).inc()
        return Record(
            topic=self.settings.topic(DEAD_LETTER),
            key=msg.key,
            value=msg.value,
            headers=(
                ("darkroom-error-code", exc.code.encode()),
                ("darkroom-error-message", exc.message.encode()),
                ("darkroom-source-topic", msg.topic.encode()),
                ("darkroom-source-partition", str(msg.partition).encode()),
                ("darkroom-source-offset", str(msg.offset).encode()),
                ("darkroom-consumer-group", self.spec.group_id.encode()),
            ),
        )

    def _commit(self, consumer: KafkaConsumer, done: list[Received]) -> None:
        if not done:
            return
        positions = _positions(done, first=False)
        for attempt in (1, 2):
            try:
                consumer.commit(offsets=positions, asynchronous=False)
            except KafkaException as exc:  # e.g. some partitions were revoked in a rebalance
                # Records of revoked partitions are redelivered to their new owner (handlers
                # are idempotent: duplicates, never a loss). With cooperative rebalancing
                # this worker may keep the others: commit those again, or they would stay
                # uncommitted (and lagging) until their next record.
                kept = {(tp.topic, tp.partition) for tp in consumer.assignment()}
                positions = [tp for tp in positions if (tp.topic, tp.partition) in kept]
                self.log.warning("commit failed; records may be redelivered", error=str(exc), attempt=attempt)
                if not positions:
                    return
                continue
            for tp in positions:
                self._committed[(tp.topic, tp.partition)] = tp.offset
            self.health.progressed()
            self._free_since, self._rebuilds = time.monotonic(), 0
            return

    # -- waiting out an outage ------------------------------------------------------------
    def _wait_out(self, consumer: KafkaConsumer, rest: list[Received], exc: DarkroomError) -> None:
        """Seek back to ``rest``, pause, back off while polling (membership stays), resume."""
        if self._stop.is_set():
            return  # nothing of ``rest`` was committed: the group's next member reads it
        delay = self.outage.begins(exc)
        for tp in _positions(rest, first=True):
            with contextlib.suppress(KafkaException):  # no longer assigned: its new owner reads it
                consumer.seek(tp)
        deadline = time.monotonic() + delay
        try:
            with self._paused(consumer):
                while not self._stop.is_set() and (left := deadline - time.monotonic()) > 0:
                    self._put_back(consumer, consumer.poll(min(left, _POLL_WHILE_BUSY_S)))
                    self._observe(consumer)
                    self.outage.waiting(left)
        finally:
            self._free_since = time.monotonic()

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            raise BrokerUnavailable(f"fatal consumer error: {err.str()}")
        if err.code() != KafkaError._PARTITION_EOF:
            self.log.warning("consumer error", error=err.str())
