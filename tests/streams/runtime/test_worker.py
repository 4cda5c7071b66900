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
    check = make_consumer(s, spec.group_id)
    try:
        partitions = check.list_topics(topic, timeout=10).topics[topic].partitions

        def committed() -> int:
            found = check.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
            return sum(max(tp.offset, 0) for tp in found)

        # A worker that lost its membership during the long record could not commit it
        # (its generation is gone) and would get it again: the commit is the evidence.
        deadline = time.monotonic() + 60
        while committed() < 1 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert committed() == 1
    finally:
        stop.set()
        thread.join(60)
        check.close()
    assert calls == [1]
