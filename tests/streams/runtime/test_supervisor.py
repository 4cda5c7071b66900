"""The thread supervisor: services restarted after a crash, and a worker's give-up ends the process."""

from __future__ import annotations

import threading

import pytest
import structlog.testing

from streams.config import Settings
from streams.errors import WorkerStalled
from streams.runtime import supervisor as supervisor_module
from streams.runtime.supervisor import Supervisor


def test_a_crashing_service_is_restarted_and_the_others_keep_going(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervisor_module, "RESTART_FIRST_S", 0.01)
    monkeypatch.setattr(supervisor_module, "RESTART_MAX_S", 0.02)
    runs: list[int] = []
    done = threading.Event()

    class Flaky:
        name = "flaky"

        def run(self, stop: threading.Event) -> None:
            runs.append(1)
            if len(runs) < 3:
                raise RuntimeError("a bug")
            done.set()
            stop.wait()

    supervisor = Supervisor(Settings(), [], [Flaky()])
    with structlog.testing.capture_logs() as logs:
        supervisor.start()
        assert done.wait(10)
        supervisor.stop.set()
        supervisor.join(10)
    assert len(runs) == 3
    assert [e["event"] for e in logs].count("service crashed; restarting") == 2


def test_a_worker_that_gives_up_stops_every_service_and_the_process_exits_1() -> None:
    running, drained = threading.Event(), threading.Event()

    class GivesUp:
        name = "stalled"

        def run(self, stop: threading.Event) -> None:
            running.wait(10)
            raise WorkerStalled("lag 3 and no commit; still stalled after 3 rebuilds")

    class Drains:
        name = "other"

        def run(self, stop: threading.Event) -> None:
            running.set()
            stop.wait()
            drained.set()

    assert Supervisor(Settings(), [], [GivesUp(), Drains()]).run_until_signalled() == 1
    assert drained.is_set()  # the other services were stopped, not abandoned
