"""The worker loop on a real broker: group membership through a batch longer than the poll interval."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from confluent_kafka import TopicPartition

from streams.config import Settings
from streams.runtime.kafka import Record, make_consumer
from streams.runtime.topics import UPLOADED
from streams.runtime.worker import Worker, WorkerSpec
from tests.helpers import produce

pytestmark = pytest.mark.integration


def test_a_batch_longer_than_the_poll_interval_keeps_the_group_and_commits_once(settings: Settings) -> None:
    # librdkafka leaves the group when poll() is not called for max.poll.interval.ms; a
    # worker that only polled between batches would lose the record's commit and get it again.
    s = settings.replace(session_timeout_ms=6000, max_poll_interval_ms=7000)
    calls: list[int] = []

    def handle(event: dict[str, Any], _log: Any) -> list[Record]:
        calls.append(event["n"])
        if len(calls) == 1:
            time.sleep(10)  # well past max.poll.interval.ms
        return []

    topic = s.topic(UPLOADED)
    spec = WorkerSpec(
        name="slow",
        group_id=s.topic("darkroom.slow"),
        topics=(topic,),
        decode=lambda value, _topic: json.loads(value or b"{}"),
        handle=handle,
    )
    produce(s, UPLOADED, "image-1", json.dumps({"n": 1}).encode())
    stop = threading.Event()
    thread = threading.Thread(target=Worker(s, spec).run, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not calls and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(10 + 10)  # the long record, then time enough for a rejoin and a redelivery
    finally:
        stop.set()
        thread.join(60)
    assert calls == [1]

    check = make_consumer(s, spec.group_id)
    try:
        partitions = check.list_topics(topic, timeout=10).topics[topic].partitions
        committed = check.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
    finally:
        check.close()
    assert sum(max(tp.offset, 0) for tp in committed) == 1
