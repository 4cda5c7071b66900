"""Progress watched from the broker's side: the checks that find a worker stalled.

A worker's own view can be wrong in exactly the cases that matter: a consumer whose
partitions stopped fetching keeps the last high watermark it saw, so its lag looks
settled; a member the broker forgot keeps its assignment. So a worker that has been free
to work (no batch in hand, no outage to wait out) without committing anything for
``DARKROOM_STUCK_AFTER_S`` asks the broker (``Watchdog.check``):

- **lag**: the group's committed offsets against each partition's end as a fetch answer
  reports it (``topics.fetched_ends``; right on both brokers) — records wait and nobody
  reads them;
- **positions beyond the end**: the broker lost records or restarted from an older log,
  so the consumer waits for offsets that will be given to other records. Where the
  committed offset is past the end too, it is moved back to the partition's beginning:
  which of the records now below it are new cannot be told from offsets, and reading
  some twice is harmless (handlers are idempotent) where skipping one is a loss. That is
  what librdkafka does on a real broker, which answers such a fetch "out of range"
  (``auto.offset.reset=earliest``); the embedded one answers nothing;
- **membership**: a broker that lists the group's members no longer lists this one.

Apart from those, a consumer that holds partitions none of which ever had a fetch answer
is stalled after three session timeouts (at least 30 s): seen on the embedded broker after
it restarted under a consumer. The worker rebuilds its clients on a ``Stall``, and gives
up (the process exits non-zero) when rebuilding does not help.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaException, TopicPartition

from streams.config import Settings
from streams.errors import BrokerUnavailable
from streams.runtime.kafka import KafkaConsumer, make_admin
from streams.runtime.offsets import fetched_end, fetched_ends

_ASK_TIMEOUT_S = 10.0
_NOT_REACHED_EVERY_S = 60.0
"""How often a worker that cannot ask the broker about its progress says so."""


@dataclass(frozen=True)
class Stall:
    """Why the worker is stalled (one line), and offsets to commit before it reads again."""

    reason: str
    rewind: list[TopicPartition] = field(default_factory=list)


class Watchdog:
    """The checks of one worker's consumer; their state lives here, not on the worker."""

    def __init__(
        self, settings: Settings, group_id: str, log: Any, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self.group_id = group_id
        self.log = log
        self.clock = clock
        self._unstarted_since: float | None = None
        self._asked = 0.0
        self._not_reached_said = 0.0
        self._admin: Any = None

    def restarted(self) -> None:
        """A new consumer: nothing it holds has been watched yet."""
        self._unstarted_since = None

    def check(self, consumer: KafkaConsumer, free_s: float) -> Stall | None:
        """A ``Stall`` if the consumer is stalled. ``free_s``: how long the worker has been
        free to make progress (no batch in hand, no outage) without committing."""
        assignment = consumer.assignment()
        if not assignment:
            self._unstarted_since = None
            return None
        if (stall := self._never_fetched(consumer, assignment)) is not None:
            return stall
        every = min(self.settings.stuck_after_s, 30.0)
        now = self.clock()
        if free_s < self.settings.stuck_after_s or now - self._asked < every:
            return None
        self._asked = now
        try:
            return self._ask_broker(consumer, assignment, free_s)
        except BrokerUnavailable as exc:
            if now - self._not_reached_said >= _NOT_REACHED_EVERY_S:
                self._not_reached_said = now
                self.log.warning("no progress, and the broker cannot say why", error=exc.message, idle_s=round(free_s))
            return None

    def _never_fetched(self, consumer: KafkaConsumer, assignment: list[TopicPartition]) -> Stall | None:
        if any(fetched_end(consumer, tp) is not None for tp in assignment):
            self._unstarted_since = None
            return None
        now = self.clock()
        if self._unstarted_since is None:
            self._unstarted_since = now
        elif (idle := now - self._unstarted_since) > max(30.0, 3 * self.settings.session_timeout_ms / 1000):
            return Stall(f"{len(assignment)} partitions assigned, none fetched for {idle:.0f}s")
        return None

    def _ask_broker(self, consumer: KafkaConsumer, assignment: list[TopicPartition], free_s: float) -> Stall | None:
        try:
            committed = consumer.committed(assignment, timeout=_ASK_TIMEOUT_S)
            positions = {(tp.topic, tp.partition): tp.offset for tp in consumer.position(assignment)}
        except KafkaException as exc:
            raise BrokerUnavailable(f"cannot read the group's committed offsets: {exc}") from None
        ends = fetched_ends(self.settings, committed, _ASK_TIMEOUT_S)
        beyond, rewind, lag = [], [], 0
        for tp in committed:
            key = (tp.topic, tp.partition)
            end, position = ends[key], positions.get(key, -1)
            if tp.offset > end:
                rewind.append(TopicPartition(tp.topic, tp.partition, self._beginning(consumer, tp)))
            if max(position, tp.offset) > end:
                beyond.append(f"{tp.topic} [{tp.partition}] at {max(position, tp.offset)}, end {end}")
            lag += max(0, end - max(tp.offset, 0))
        if beyond:
            return Stall(
                f"positions beyond the partitions' end (the broker lost records or restarted from an older log):"
                f" {'; '.join(beyond)}",
                rewind,
            )
        if lag > 0:
            return Stall(f"lag {lag} on {len(assignment)} partitions and no commit for {free_s:.0f}s")
        return self._forgotten(consumer)

    def _beginning(self, consumer: KafkaConsumer, tp: TopicPartition) -> int:
        """The partition's first offset (its low watermark; right on both brokers)."""
        try:
            marks = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), _ASK_TIMEOUT_S)
        except KafkaException as exc:
            raise BrokerUnavailable(f"cannot look up where {tp.topic} [{tp.partition}] begins: {exc}") from None
        if marks is None:
            raise BrokerUnavailable(f"no answer for where {tp.topic} [{tp.partition}] begins")
        return max(0, marks[0])

    def _forgotten(self, consumer: KafkaConsumer) -> Stall | None:
        """A ``Stall`` if the broker lists the group's members and this consumer is not among
        them. The embedded broker lists none for any group, so there it says nothing."""
        if self._admin is None:
            self._admin = make_admin(self.settings)
        try:
            group = self._admin.describe_consumer_groups([self.group_id], request_timeout=_ASK_TIMEOUT_S)[
                self.group_id
            ].result(timeout=_ASK_TIMEOUT_S)
        except (KafkaException, TimeoutError) as exc:
            raise BrokerUnavailable(f"cannot describe group {self.group_id}: {exc}") from None
        members = {m.member_id for m in group.members}
        me = consumer.memberid()
        if members and me not in members:
            return Stall(f"the broker no longer lists member {me} of group {self.group_id} ({len(members)} listed)")
        return None
