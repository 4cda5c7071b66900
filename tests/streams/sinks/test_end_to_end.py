"""Images → result rows in PostgreSQL and verified webhooks, through crashes and a replay.

A real HTTP receiver on loopback fails each webhook's first attempts (500, then 429 with
Retry-After, then a timeout) before it accepts; the webhook dispatcher runs as a
subprocess and is SIGKILLed midway, then restarted. Signatures are checked with svix,
an implementation independent of darkroom's signing code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import TopicPartition
from svix.webhooks import Webhook

from streams.client import Client
from streams.config import Settings
from streams.dev.samples import photo_jpeg
from streams.runtime.kafka import make_consumer
from streams.runtime.storage import ObjectStore
from streams.runtime.supervisor import Supervisor
from streams.runtime.topics import COMPLETED, FAILED
from streams.services import build_supervisor
from streams.sinks import outbox
from streams.sinks.database import Database
from streams.sinks.results import results_spec
from streams.sinks.webhooks.signing import new_secret
from streams.wire.events import Serdes
from tests.helpers import read_topic
from tests.receiver import Answer, Receiver, Request

pytestmark = pytest.mark.integration

IMAGES = 8
TIMEOUT_S = 1.0


def failing_first(request: Request) -> Answer:
    """Each (path, webhook-id) gets 500, then 429 + Retry-After, then a timeout; then 200."""
    return {
        1: (500, {}, 0.0),
        2: (429, {"Retry-After": "1"}, 0.0),
        3: (200, {}, TIMEOUT_S + 0.5),
    }.get(request.attempt, (200, {}, 0.0))


class DispatcherProcess:
    def __init__(self, settings: Settings) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", "webhooks"],
            env={**os.environ, **settings.to_env()},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(failing_first)
    yield r
    r.close()


@pytest.fixture
def sink_settings(settings: Settings, postgres_url: str) -> Settings:
    return settings.replace(
        database_url=postgres_url,
        webhook_schedule="0,0.3,0.3,0.3,0.3,0.3,0.3",
        webhook_timeout_s=TIMEOUT_S,
        webhook_allow_networks="127.0.0.1/32",
        webhook_secrets=new_secret(),
    )


def wait_for(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def committed_total(settings: Settings, group: str) -> int:
    consumer = make_consumer(settings, group)
    try:
        parts = [TopicPartition(settings.topic(t), p) for t in (COMPLETED, FAILED) for p in range(settings.partitions)]
        return sum(max(tp.offset, 0) for tp in consumer.committed(parts, timeout=10))
    finally:
        consumer.close()


def snapshot(db: Database) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    with db.transaction() as tx:
        results = tx.query("SELECT * FROM results ORDER BY image_id")
        deliveries = tx.query("SELECT * FROM webhook_deliveries ORDER BY webhook_id, target")
    return results, deliveries


def test_results_and_webhooks_survive_a_dispatcher_sigkill_and_a_replay(
    sink_settings: Settings, store: ObjectStore, receiver: Receiver
) -> None:
    settings = sink_settings
    db = Database(settings)
    db.migrate()
    sub_id, sub_secret = outbox.Outbox(db).subscribe("acme", receiver.url + "/tenant", ["image.completed"])
    pipeline = build_supervisor(settings, ["ingest", "thumbnail", "results"])
    pipeline.start()
    first = DispatcherProcess(settings)
    try:
        with Client(settings, store) as client:
            subs = [
                client.submit(
                    photo_jpeg(400, 300, seed=i),
                    f"p{i}.jpg",
                    "thumbnail:sizes=64",
                    callback_url=receiver.url + "/callback",
                    tenant="acme",
                )
                for i in range(IMAGES)
            ]
            finals = client.wait(subs, timeout_s=120)
        assert all(f.status == "completed" for f in finals.values()) and len(finals) == IMAGES

        wait_for(lambda: len(receiver.requests) >= IMAGES, 60, "the first webhook attempts")
        first.kill()
        killed_at = len(receiver.requests)
        second = DispatcherProcess(settings)
        try:
            wait_for(
                lambda: len(outbox.Outbox(db).deliveries(status="delivered")) == 2 * IMAGES,
                120,
                "every webhook delivered",
            )
        finally:
            second.stop()
        assert second.proc.returncode == 0
        assert len(receiver.requests) > killed_at

        # One row per image, each the image's completion.
        results, deliveries = snapshot(db)
        assert sorted(r["image_id"] for r in results) == sorted(s.image_id for s in subs)
        completion_ids = {sub.image_id: finals[sub.image_id].event["event_id"] for sub in subs}
        assert {r["image_id"]: r["final_event_id"] for r in results} == completion_ids
        assert all(r["status"] == "completed" for r in results)

        # Every request verifies with an independent implementation, and each image's
        # deliveries (every attempt, every target) share one webhook-id: its completion id.
        ids_by_image: dict[str, set[str]] = defaultdict(set)
        accepted: set[tuple[str, str]] = set()
        for request in receiver.requests:
            secret = sub_secret if request.path == "/tenant" else settings.webhook_secrets[0].get_secret_value()
            payload = Webhook(secret).verify(request.body, request.headers)
            image_id = payload["data"]["image_id"]
            ids_by_image[image_id].add(request.headers["webhook-id"])
            if request.attempt >= 4:
                accepted.add((request.path, image_id))
        assert {image: ids for image, ids in ids_by_image.items()} == {
            image: {event_id} for image, event_id in completion_ids.items()
        }
        assert accepted == {(path, s.image_id) for s in subs for path in ("/callback", "/tenant")}
        assert {d["target"] for d in deliveries} == {outbox.CALLBACK, sub_id}

        # Replay the whole completed topic into the sinks: nothing changes, nothing is sent.
        requests_before = len(receiver.requests)
        total = len(read_topic(settings, settings.topic(COMPLETED), expect=IMAGES))
        replay_db = Database(settings)
        replay_spec = dataclasses.replace(
            results_spec(settings, Serdes(settings), replay_db, outbox.enqueue),
            group_id=settings.topic("replay-results"),
        )
        replay = Supervisor(settings, [replay_spec], resources=[replay_db])
        replay.start()
        third = DispatcherProcess(settings)
        try:
            wait_for(lambda: committed_total(settings, settings.topic("replay-results")) >= total, 60, "the replay")
            time.sleep(1.0)  # give a (wrong) new delivery the chance to be sent
        finally:
            replay.stop.set()
            replay.join(30)
            third.stop()
        assert snapshot(db) == (results, deliveries)
        assert len(receiver.requests) == requests_before

        # `darkroom status` shows the stored result with working download links.
        shown = subprocess.run(
            [sys.executable, "-m", "streams.cli", "status", subs[0].image_id, "--json"],
            env={**os.environ, **settings.to_env()},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert shown.returncode == 0, shown.stderr
        status = json.loads(shown.stdout)
        assert status["status"] == "completed" and len(status["webhooks"]) == 2
        (output,) = status["outputs"]
        with urllib.request.urlopen(output["url"], timeout=10) as response:
            assert hashlib.sha256(response.read()).hexdigest() == output["sha256"]
    finally:
        if first.proc.poll() is None:
            first.kill()
        pipeline.stop.set()
        pipeline.join(30)
        db.close()
