"""Several worker processes under one supervisor (``darkroom run --processes``).

Threads share one interpreter lock, so one process cannot use a machine's cores for
CPU-bound steps; more members of a consumer group can. Each child is ``darkroom worker
NAME``: its own consumer in the service's group, its own producer, the same loop. The
supervisor:

- restarts a child that exits or crashes, with backoff (``retry.Backoff``: 1 s to 30 s, reset once a
  child has run for a minute), counted in ``darkroom_service_restarts_total``;
- on SIGTERM/SIGINT sends SIGTERM to every child and waits: each finishes the batch in
  hand, commits and leaves its group, as a single worker does;
- makes the children die with it if it is killed outright (``PR_SET_PDEATHSIG``), so no
  orphan keeps consuming;
- serves one ``/metrics`` for all of them (prometheus-client's multiprocess mode, files
  in a directory of its own) and judges ``/healthz``/``/readyz`` from the snapshots the
  children write there.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import multiprocess, values

from streams.observe import metrics, server
from streams.observe.health import read_snapshots
from streams.runtime.retry import Backoff
from streams.runtime.supervisor import RESTART_FIRST_S, RESTART_MAX_S, stop_on_signals

_log = structlog.get_logger("darkroom.processes")
_PR_SET_PDEATHSIG = 1
_STEADY_S = 60.0
"""A child that ran this long before exiting restarts without the backoff it had built up."""
SNAPSHOT_EVERY_S = 1.0
"""How often a child writes its health snapshot; three missed ones make it unhealthy."""


@dataclass(frozen=True)
class Child:
    """One worker process: the service it runs and what its environment adds."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def use_multiprocess_metrics(directory: Path) -> None:
    """Send this process's metrics (and its children's, through the environment) to
    ``directory``; called before any metric is touched."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ[metrics.MULTIPROC_ENV] = str(directory)
    values.ValueClass = values.get_value_class()


class _Slot:
    def __init__(self, child: Child) -> None:
        self.child = child
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.backoff = Backoff(RESTART_FIRST_S, RESTART_MAX_S)
        self.due = 0.0


class ProcessSupervisor:
    def __init__(self, children: Sequence[Child], metrics_dir: Path) -> None:
        self.slots = [_Slot(child) for child in children]
        self.metrics_dir = metrics_dir
        self.stop = threading.Event()

    def pids(self) -> set[int]:
        return {slot.proc.pid for slot in self.slots if slot.proc is not None and slot.proc.poll() is None}

    def loops(self, stale_after_s: float) -> list[dict[str, Any]]:
        """Every child's loops; a child waiting to be restarted counts as not ready."""
        found = read_snapshots(self.metrics_dir, self.pids(), stale_after_s)
        found += [
            {"name": slot.child.name, "healthy": True, "ready": False, "problems": ["exited; restarting"]}
            for slot in self.slots
            if slot.proc is None and not self.stop.is_set()
        ]
        return found

    def serve(self, port: int, stuck_after_s: float, host: str) -> None:
        stale_after_s = max(10.0, 3 * SNAPSHOT_EVERY_S)
        server.start(port, stuck_after_s, lambda: self.loops(stale_after_s), host=host)

    def _start(self, slot: _Slot) -> None:
        slot.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", *slot.child.argv],
            env={**os.environ, **slot.child.env},
            preexec_fn=_die_with_parent,
        )
        slot.started = time.monotonic()
        _log.info("process started", service=slot.child.name, pid=slot.proc.pid)

    def _reap(self, slot: _Slot) -> None:
        """A child exited while the supervisor runs: restart it after its backoff."""
        assert slot.proc is not None
        code, pid = slot.proc.returncode, slot.proc.pid
        multiprocess.mark_process_dead(pid)
        ran = time.monotonic() - slot.started
        if ran > _STEADY_S:
            slot.backoff.reset()
        delay = slot.backoff.next()
        slot.due = time.monotonic() + delay
        slot.proc = None
        metrics.RESTARTS.labels(slot.child.name).inc()
        _log.error(
            "process exited; restarting", service=slot.child.name, pid=pid, exit_code=code, backoff_s=round(delay, 2)
        )

    def run_until_signalled(self) -> int:
        """Run the children until SIGTERM/SIGINT, then stop them all and wait."""
        with stop_on_signals(self.stop):
            while not self.stop.is_set():
                for slot in self.slots:
                    if slot.proc is not None and slot.proc.poll() is not None:
                        self._reap(slot)
                    if slot.proc is None and time.monotonic() >= slot.due:
                        self._start(slot)
                self.stop.wait(0.5)
            running = [slot.proc for slot in self.slots if slot.proc is not None]
            for proc in running:
                proc.send_signal(signal.SIGTERM)
            for proc in running:
                proc.wait()
                multiprocess.mark_process_dead(proc.pid)
        return 0
