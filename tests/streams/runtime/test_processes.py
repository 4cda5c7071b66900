"""``darkroom run --processes``: several worker processes under one supervisor, for real.

The supervisor is a subprocess; its children are found through its own ``/readyz`` (each
loop names its process). A child is SIGKILLed and must come back; SIGTERM must drain
every child; SIGKILL of the supervisor must take its children with it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from streams.client import Client
from streams.config import Settings
from streams.dev.samples import photo_jpeg
from streams.runtime.storage import ObjectStore
from tests.streams.observe.test_observe import eventually, probe, scrape, total

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead too: its parent has not reaped it yet
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class Run:
    """``darkroom run --processes …`` on the test's topics, with its endpoint."""

    def __init__(self, settings: Settings, processes: str) -> None:
        port = _free_port()
        env = {**os.environ, **settings.to_env(), "DARKROOM_METRICS_PORT": str(port), "DARKROOM_LOG_FORMAT": "json"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "run", "--processes", processes],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.base = f"http://127.0.0.1:{port}"

    def ready(self) -> bool:
        try:
            return probe(self.base, "/readyz")[0] == 200
        except OSError:
            return False

    def children(self, name: str) -> set[int]:
        return {loop["pid"] for loop in probe(self.base, "/readyz")[1]["loops"] if loop["name"] == name}


@pytest.fixture
def run_processes(settings: Settings) -> Iterator[list[Run]]:
    runs: list[Run] = []
    yield runs
    for run in runs:
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()


def test_processes_share_a_group_restart_after_a_crash_and_drain_on_sigterm(
    settings: Settings, store: ObjectStore, run_processes: list[Run]
) -> None:
    run = Run(settings, "ingest=1,thumbnail=2,enhance=0,upscale=0,results=0,webhooks=0")
    run_processes.append(run)
    eventually(run.ready, 90, "every child joined its group")
    children = run.children("thumbnail")
    assert len(children) == 2

    client = Client(settings, store)
    first = [client.submit(photo_jpeg(320, 240, seed=i), f"a{i}.jpg", "thumbnail:sizes=64") for i in range(6)]
    assert {f.status for f in client.wait(first, timeout_s=120).values()} == {"completed"}
    group = settings.topic("darkroom.thumbnail")
    assert total(scrape(run.base), "darkroom_records_consumed_total", group=group) == 6  # one endpoint, both children

    killed = min(children)
    os.kill(killed, signal.SIGKILL)
    eventually(
        lambda: total(scrape(run.base), "darkroom_service_restarts_total", service="thumbnail") == 1,
        30,
        "the crash counted as a restart",
    )
    eventually(lambda: run.ready() and len(run.children("thumbnail") - {killed}) == 2, 90, "a new child joined")
    second = [client.submit(photo_jpeg(320, 240, seed=i), f"b{i}.jpg", "thumbnail:sizes=64") for i in range(6)]
    assert {f.status for f in client.wait(second, timeout_s=120).values()} == {"completed"}

    every = run.children("thumbnail") | run.children("ingest")
    run.proc.send_signal(signal.SIGTERM)
    assert run.proc.wait(timeout=60) == 0
    assert not any(_alive(pid) for pid in every)


def test_children_die_with_a_killed_supervisor(settings: Settings, run_processes: list[Run]) -> None:
    run = Run(settings, "ingest=2,thumbnail=0,enhance=0,upscale=0,results=0,webhooks=0")
    run_processes.append(run)
    eventually(run.ready, 90, "both children joined")
    children = run.children("ingest")
    assert len(children) == 2
    run.proc.kill()
    run.proc.wait()
    eventually(lambda: not any(_alive(pid) for pid in children), 30, "no orphan keeps consuming")
