"""What ``/healthz`` and ``/readyz`` answer: the state each loop of this process reports.

A loop (a worker's consume loop) reports as it goes: a beat on every turn, progress
when it commits, its assignment, its lag, and the outage it is paused on. From that:

- **healthy** unless a loop has stopped turning, or holds lag on its partitions and has
  made no progress for ``DARKROOM_STUCK_AFTER_S`` while not paused — a hung handler, a
  wedged client — or its watchdog found it stalled (``streams.runtime.watchdog``: lag
  the broker sees and nobody reads, positions beyond a partition's end, a member the
  broker forgot) and it has not committed since. An orchestrator restarts an unhealthy
  process.
- **ready** when healthy, every loop has joined its group (an assignment arrived; it may
  be empty when the group has more members than partitions) and none is paused. A worker
  waiting out an outage is not ready, with the reason, but healthy: restarting it would
  not bring the dependency back.

Processes started by a supervisor (``darkroom run --processes``) write their snapshot to
a file beside the metrics; the supervisor's endpoint reads them (``read_snapshots``).
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class LoopState:
    """One loop's report. Written by its own thread, read by the health endpoint."""

    name: str
    beat: float = field(default_factory=time.monotonic)
    progress: float = field(default_factory=time.monotonic)
    joined: bool = False
    partitions: int = 0
    lag: int = 0
    paused: str | None = None
    stalled: str | None = None
    """Why the watchdog found the loop stalled; cleared by its next commit."""

    def turned(self) -> None:
        self.beat = time.monotonic()

    def progressed(self) -> None:
        self.beat = self.progress = time.monotonic()
        self.stalled = None

    def assigned(self, partitions: int, *, busy: bool) -> None:
        """An assignment arrived. Unless a batch is in hand (whose hang must not be hidden
        by the rebalances it causes), it starts the no-progress clock afresh."""
        self.joined, self.partitions = True, partitions
        if not busy:
            self.progress = time.monotonic()

    def view(self, stuck_after_s: float, now: float) -> dict[str, Any]:
        """This loop as the endpoints show it, with its verdicts."""
        idle_s = now - self.progress
        problems = []
        if now - self.beat > stuck_after_s:
            problems.append(f"loop has not turned for {now - self.beat:.0f}s")
        if self.lag > 0 and self.paused is None and idle_s > stuck_after_s:
            problems.append(f"lag {self.lag} and no progress for {idle_s:.0f}s")
        if self.stalled is not None:
            problems.append(f"stalled: {self.stalled}")
        return {
            "name": self.name,
            "healthy": not problems,
            "ready": not problems and self.joined and self.paused is None,
            "problems": problems,
            "joined": self.joined,
            "partitions": self.partitions,
            "lag": self.lag,
            "paused": self.paused,
            "stalled": self.stalled,
            "idle_s": round(idle_s, 1),
        }


class Health:
    """The loops of this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loops: dict[int, LoopState] = {}

    def register(self, name: str) -> LoopState:
        state = LoopState(name)
        with self._lock:
            self._loops[id(state)] = state
        return state

    def unregister(self, state: LoopState) -> None:
        with self._lock:
            self._loops.pop(id(state), None)

    def snapshot(self, stuck_after_s: float) -> list[dict[str, Any]]:
        now = time.monotonic()
        with self._lock:
            loops = list(self._loops.values())
        return [loop.view(stuck_after_s, now) for loop in loops]

    def write_snapshot(self, path: Path, stuck_after_s: float) -> None:
        """Replace ``path`` with this process's loops (atomically: readers never see half a file)."""
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "at": time.time(), "loops": self.snapshot(stuck_after_s)}))
        tmp.replace(path)


HEALTH = Health()
"""This process's loops."""

SNAPSHOT_PREFIX = "health-"


def snapshot_path(directory: Path, pid: int) -> Path:
    return directory / f"{SNAPSHOT_PREFIX}{pid}.json"


def read_snapshots(directory: Path, pids: set[int], stale_after_s: float) -> list[dict[str, Any]]:
    """The loops of the supervised processes ``pids``; one whose snapshot is missing or
    older than ``stale_after_s`` counts as an unhealthy loop of its own."""
    loops: list[dict[str, Any]] = []
    for pid in sorted(pids):
        path = snapshot_path(directory, pid)
        try:
            snap = json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            snap = None
        if snap is None or time.time() - snap["at"] > stale_after_s:
            problem = (
                "no health report yet" if snap is None else f"no health report for {time.time() - snap['at']:.0f}s"
            )
            loops.append(
                {"name": f"process {pid}", "healthy": snap is None, "ready": False, "problems": [problem], "pid": pid}
            )
            continue
        if not snap["loops"]:  # still starting (waiting for the broker or the database)
            loops.append(
                {"name": f"process {pid}", "healthy": True, "ready": False, "problems": ["starting"], "pid": pid}
            )
        loops.extend({**loop, "pid": pid} for loop in snap["loops"])
    return loops


def verdict(loops: list[dict[str, Any]]) -> tuple[bool, bool]:
    """(healthy, ready) over every loop; a process with no loops yet is alive but not ready."""
    healthy = all(loop["healthy"] for loop in loops)
    return healthy, healthy and bool(loops) and all(loop["ready"] for loop in loops)
