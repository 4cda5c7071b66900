"""A thumbnail worker SIGKILLed at random points mid-stream loses nothing.

The worker runs as a real subprocess (`python -m streams.cli worker thumbnail`); it is
killed after a random number of processed records, several times, and restarted. Then a
fresh consumer reads the completed and failed topics from the beginning.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator

import pytest

from streams.client import Client
from streams.config import Settings
from streams.dev.samples import photo_jpeg
from streams.handlers.steps import worker_specs
from streams.runtime.storage import ObjectStore
from streams.runtime.supervisor import Supervisor
from streams.runtime.topics import COMPLETED, FAILED
from streams.wire.events import Serdes
from tests.helpers import decode_all, read_topic

pytestmark = pytest.mark.integration

IMAGES = 48
KILLS = 4


class WorkerProcess:
    """A thumbnail worker subprocess whose JSON log lines are counted as they arrive."""

    def __init__(self, settings: Settings) -> None:
        env = {**os.environ, **settings.to_env(), "DARKROOM_LOG_FORMAT": "json"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", "thumbnail"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.processed = 0
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if '"event": "processed"' in line:
                self.processed += 1

    def kill_after(self, records: int, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.processed < records and time.monotonic() < deadline and self.proc.poll() is None:
            time.sleep(0.005)
        self.proc.send_signal(signal.SIGKILL)
        self._reap()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self._reap()

    def _reap(self) -> None:
        self.proc.wait(30)
        self._reader.join(5)
        assert self.proc.stderr is not None
        self.proc.stderr.close()


@pytest.fixture
def ingest(settings: Settings) -> Iterator[None]:
    supervisor = Supervisor(settings, worker_specs(settings, ["ingest"]))
    supervisor.start()
    yield
    supervisor.stop.set()
    supervisor.join(30)


def test_sigkill_at_random_points_loses_nothing_and_duplicates_are_identical(
    settings: Settings, store: ObjectStore, ingest: None
) -> None:
    rng = random.Random(int(os.environ.get("DARKROOM_TEST_SEED", time.time())))
    client = Client(settings, store)
    subs = [
        client.submit(
            photo_jpeg(1024, 768, seed=i), f"img{i}.jpg", "thumbnail:sizes=64+200x200,fit=cover", image_id=f"k{i:03d}"
        )
        for i in range(IMAGES)
    ]
    for _ in range(KILLS):
        WorkerProcess(settings).kill_after(rng.randint(1, 6))
    survivor = WorkerProcess(settings)
    try:
        finals = client.wait(subs, timeout_s=180)
    finally:
        survivor.stop()
        client.close()
    assert survivor.proc.returncode == 0, "SIGTERM must stop a worker cleanly"
    assert len(finals) == IMAGES, f"missing: {sorted({s.image_id for s in subs} - set(finals))}"

    serdes = Serdes(settings)
    completed = decode_all(read_topic(settings, settings.topic(COMPLETED), expect=IMAGES), serdes.completed)
    failed = decode_all(read_topic(settings, settings.topic(FAILED), idle_s=1.0), serdes.failed)
    assert failed == []
    by_image: dict[str, list[dict[str, object]]] = defaultdict(list)
    for event in completed:
        by_image[str(event["image_id"])].append(event)
    assert set(by_image) == {s.image_id for s in subs}
    for image_id, duplicates in by_image.items():
        first = duplicates[0]
        for again in duplicates[1:]:
            assert again["event_id"] == first["event_id"], image_id
            assert again["outputs"] == first["outputs"], image_id
        for output in first["outputs"]:  # type: ignore[attr-defined]
            data = store.get(output["bucket"], output["key"])
            assert hashlib.sha256(data).hexdigest() == output["sha256"]
