"""In-memory stand-ins for the broker and the object store, for unit tests of pure logic.

They implement the seams darkroom's loop and steps are written against
(``streams.runtime.kafka.KafkaConsumer`` / ``KafkaProducer``, ``streams.runtime.storage.Store``)
with the behaviour of the real thing that the logic depends on, and no more:

- ``FakeBroker`` keeps each topic's partitions as lists, a group's committed offsets, and
  can refuse every produce (``down``: deliveries time out) or refuse records for good
  (``refuse``: a permanent ``KafkaError``, as for a record too large).
- ``FakeConsumer`` is assigned every partition of its topics at its first poll (calling
  ``on_assign`` from inside ``poll``, as librdkafka does), reads from the committed
  offset, and keeps a partition's *pause* through its loss and re-assignment, as
  librdkafka does (``lose``, ``regain``) — the behaviour behind the silent stalls.
- ``FakeProducer`` delivers on ``flush`` and reports through ``on_delivery``.
- ``MemoryStore`` keeps objects in a dict and can be made unreachable (``down``).

Integration tests use the real broker, S3 server and database; these never replace them.
"""

from __future__ import annotations

import threading
import zlib
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from processors.errors import FileTooLarge
from streams.errors import ObjectMissing, StorageUnavailable
from streams.runtime.storage import ObjectInfo

_INVALID = -1001


@dataclass(frozen=True)
class FakeMessage:
    _topic: str
    _partition: int
    _offset: int
    _key: bytes | None
    _value: bytes | None
    _headers: tuple[tuple[str, bytes], ...] = ()

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> list[tuple[str, bytes]]:
        return list(self._headers)

    def error(self) -> None:
        return None


@dataclass
class FakeBroker:
    partitions: int = 2
    logs: dict[str, list[list[FakeMessage]]] = field(default_factory=dict)
    committed: dict[tuple[str, str, int], int] = field(default_factory=dict)
    down: bool = False
    """Deliveries time out (the broker does not answer)."""
    refuse: Callable[[str, bytes | None], KafkaError | None] = lambda topic, value: None
    """A permanent error for a record (topic, value), or None to take it."""
    commits: list[tuple[str, str, int, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def log(self, topic: str) -> list[list[FakeMessage]]:
        return self.logs.setdefault(topic, [[] for _ in range(self.partitions)])

    def append(self, topic: str, key: str | bytes | None, value: bytes | None, headers: Any = ()) -> FakeMessage:
        raw_key = key.encode() if isinstance(key, str) else key
        partition = zlib.crc32(raw_key or b"") % self.partitions
        with self.lock:
            part = self.log(topic)[partition]
            msg = FakeMessage(topic, partition, len(part), raw_key, value, tuple(headers or ()))
            part.append(msg)
        return msg

    def records(self, topic: str) -> list[FakeMessage]:
        with self.lock:
            return [m for part in self.log(topic) for m in part]


class FakeConsumer:
    def __init__(self, broker: FakeBroker, group: str, **_config: object) -> None:
        self.broker, self.group = broker, group
        self.topics: list[str] = []
        self.on_assign: Any = None
        self.assigned: list[tuple[str, int]] = []
        self.positions: dict[tuple[str, int], int] = {}
        self.paused: set[tuple[str, int]] = set()
        self.to_assign: list[tuple[str, int]] | None = None
        self.lost: list[tuple[str, int]] = []
        self.fail_commits = 0
        """Commits that raise (as during a rebalance) before they work again."""
        self.closed = False

    # -- what tests do to it --------------------------------------------------------------
    def lose(self) -> None:
        """The group takes every partition away (a session timed out). Pauses stay, as
        librdkafka keeps them on its partition objects."""
        self.lost, self.assigned = list(self.assigned), []

    def regain(self) -> None:
        """The group hands the lost partitions back at the next poll."""
        self.to_assign = self.lost

    # -- the KafkaConsumer seam --------------------------------------------------------------
    def subscribe(self, topics: list[str], on_assign: Any = None, on_revoke: Any = None, on_lost: Any = None) -> None:
        self.topics, self.on_assign = topics, on_assign
        self.to_assign = [(t, p) for t in topics for p in range(self.broker.partitions)]

    def _serve_rebalance(self) -> None:
        if self.to_assign is None:
            return
        handed, self.to_assign = self.to_assign, None
        for key in handed:
            self.positions[key] = max(self.broker.committed.get((self.group, *key), 0), 0)
        if self.on_assign is not None:
            self.on_assign(self, [TopicPartition(t, p) for t, p in handed])
        self.assigned = handed

    def poll(self, timeout: float = -1) -> FakeMessage | None:
        found = self.consume(1, timeout)
        return found[0] if found else None

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Any]:
        self._serve_rebalance()
        out: list[Any] = []
        with self.broker.lock:
            for key in self.assigned:
                if key in self.paused:
                    continue
                part = self.broker.log(key[0])[key[1]]
                while len(out) < num_messages and self.positions[key] < len(part):
                    out.append(part[self.positions[key]])
                    self.positions[key] += 1
        if not out and timeout and timeout > 0:
            threading.Event().wait(min(timeout, 0.005))
        return out

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(t, p) for t, p in self.assigned]

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused.update((tp.topic, tp.partition) for tp in partitions)

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.paused.difference_update((tp.topic, tp.partition) for tp in partitions)

    def seek(self, partition: TopicPartition) -> None:
        key = (partition.topic, partition.partition)
        if key not in self.assigned:
            raise KafkaException(KafkaError(KafkaError._STATE, "not assigned"))
        self.positions[key] = partition.offset

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool = True) -> list[TopicPartition]:
        if self.fail_commits:
            self.fail_commits -= 1
            raise KafkaException(KafkaError(KafkaError.REBALANCE_IN_PROGRESS, "rebalance in progress"))
        with self.broker.lock:
            for tp in offsets:
                self.broker.committed[(self.group, tp.topic, tp.partition)] = tp.offset
                self.broker.commits.append((self.group, tp.topic, tp.partition, tp.offset))
        return offsets

    def committed(self, partitions: list[TopicPartition], timeout: float = -1) -> list[TopicPartition]:
        return [
            TopicPartition(
                tp.topic, tp.partition, self.broker.committed.get((self.group, tp.topic, tp.partition), _INVALID)
            )
            for tp in partitions
        ]

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [
            TopicPartition(tp.topic, tp.partition, self.positions.get((tp.topic, tp.partition), _INVALID))
            for tp in partitions
        ]

    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float = -1, cached: bool = False
    ) -> tuple[int, int]:
        with self.broker.lock:
            return 0, len(self.broker.log(partition.topic)[partition.partition])

    def memberid(self) -> str:
        return f"fake-{id(self)}"

    def close(self) -> None:
        self.closed = True


class FakeProducer:
    def __init__(self, broker: FakeBroker) -> None:
        self.broker = broker
        self.queued: list[tuple[str, Any, Any, Any, Any]] = []
        self.purged = False

    def produce(
        self,
        topic: str,
        value: str | bytes | None = None,
        key: str | bytes | None = None,
        partition: int = -1,
        callback: Any = None,
        on_delivery: Any = None,
        timestamp: int = 0,
        headers: Any = None,
    ) -> None:
        self.queued.append((topic, key, value, headers, on_delivery))

    def poll(self, timeout: float = -1) -> int:
        return 0

    def flush(self, timeout: float = -1) -> int:
        if self.broker.down:
            return len(self.queued)  # nothing acknowledged within the timeout
        queued, self.queued = self.queued, []
        for topic, key, value, headers, on_delivery in queued:
            error = self.broker.refuse(topic, value)
            msg = None if error is not None else self.broker.append(topic, key, value, headers)
            if on_delivery is not None:
                on_delivery(error, msg)
        return 0

    def purge(self, in_queue: bool = True, in_flight: bool = True, blocking: bool = True) -> None:
        self.queued, self.purged = [], True


@dataclass
class MemoryStore:
    objects: dict[tuple[str, str], tuple[bytes, str, dict[str, str]]] = field(default_factory=dict)
    down: bool = False
    calls: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _check(self, op: str, key: str) -> None:
        self.calls.append((op, key))
        if self.down:
            raise StorageUnavailable(f"object storage unreachable for {key}: ConnectionRefusedError")

    def ensure_bucket(self, bucket: str) -> None:
        self._check("ensure_bucket", bucket)

    def stat(self, bucket: str, key: str) -> ObjectInfo:
        self._check("stat", key)
        with self.lock:
            if (bucket, key) not in self.objects:
                raise ObjectMissing(f"s3://{bucket}/{key} does not exist")
            data, content_type, metadata = self.objects[(bucket, key)]
        return ObjectInfo(size=len(data), content_type=content_type, metadata=dict(metadata))

    def get(self, bucket: str, key: str, *, max_bytes: int | None = None) -> bytes:
        self._check("get", key)
        with self.lock:
            if (bucket, key) not in self.objects:
                raise ObjectMissing(f"s3://{bucket}/{key} does not exist")
            data = self.objects[(bucket, key)][0]
        if max_bytes is not None and len(data) > max_bytes:
            raise FileTooLarge(f"s3://{bucket}/{key} is {len(data)} bytes; the limit is {max_bytes}")
        return data

    def put(
        self,
        bucket: str,
        key: str,
        data: bytes,
        *,
        content_type: str = "application/octet-stream",
        metadata: Mapping[str, str] | None = None,
        if_absent: bool = False,
    ) -> bool:
        self._check("put", key)
        with self.lock:
            if if_absent and (bucket, key) in self.objects:
                return False
            self.objects[(bucket, key)] = (data, content_type, dict(metadata or {}))
        return True


def group_commits(broker: FakeBroker, group: str) -> dict[tuple[str, int], list[int]]:
    """Every offset ``group`` committed, per partition, in order."""
    found: dict[tuple[str, int], list[int]] = defaultdict(list)
    for g, topic, partition, offset in broker.commits:
        if g == group:
            found[(topic, partition)].append(offset)
    return found
