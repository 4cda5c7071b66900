"""Runs several workers in one process and stops them cleanly on SIGTERM/SIGINT.

Each worker owns a thread with its own consumer and producer. On a signal every worker
finishes the record in hand (produce, wait for delivery, commit), then leaves its group,
so partitions move to other members at once. A worker that crashes is restarted with
backoff; the others keep going. A worker that stayed stalled through every rebuild of its
clients (``WorkerStalled``) stops them all instead: the process exits 1, so whatever
started it (``darkroom run --processes``, systemd, Kubernetes) starts a fresh one.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import Any, Protocol

import structlog

from processors.errors import DarkroomError
from streams.config import Settings
from streams.errors import WorkerStalled
from streams.observe import metrics
from streams.runtime.retry import Backoff
from streams.runtime.worker import Worker, WorkerSpec

_log = structlog.get_logger("darkroom.supervisor")
RESTART_FIRST_S = 1.0
RESTART_MAX_S = 30.0
"""A crashed service or child process is started again after a backoff from 1 s to 30 s."""


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Inside, SIGTERM and SIGINT set ``stop`` (and say so) instead of ending the process at
    once, so what runs can finish what it holds; the previous handlers come back after."""

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        _log.info("stopping", signal=signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class Service(Protocol):
    """Anything the supervisor can run: a name, and a loop that returns once ``stop`` is set."""

    name: str

    def run(self, stop: threading.Event) -> None: ...


class Closeable(Protocol):
    def close(self) -> None: ...


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        specs: Sequence[WorkerSpec[Any]],
        services: Sequence[Service] = (),
        resources: Sequence[Closeable] = (),
    ) -> None:
        """``resources`` (database connections…) are closed once every service has stopped."""
        self.settings = settings
        self.services: list[Service] = [Worker(settings, spec) for spec in specs] + list(services)
        self.resources = list(resources)
        self.stop = threading.Event()
        self.gave_up: WorkerStalled | None = None
        """Set when a worker stalled beyond repair: every service stops, the process exits 1."""
        self._threads: list[threading.Thread] = []

    def _keep_running(self, service: Service) -> None:
        backoff = Backoff(RESTART_FIRST_S, RESTART_MAX_S)
        while not self.stop.is_set():
            try:
                service.run(self.stop)
            except WorkerStalled as exc:
                _log.error(
                    "worker stalled beyond repair; stopping the process", service=service.name, error=exc.message
                )
                self.gave_up = exc
                self.stop.set()
                return
            except DarkroomError as exc:  # e.g. a producer that kept failing: the worker left its group
                _log.error("service stopped; restarting", service=service.name, error_code=exc.code, error=exc.message)
            except Exception:  # a bug: keep the other services alive, keep the traceback for the report
                _log.exception("service crashed; restarting", service=service.name)
            else:
                return
            metrics.RESTARTS.labels(service.name).inc()
            self.stop.wait(backoff.next())

    def start(self) -> None:
        for service in self.services:
            thread = threading.Thread(target=self._keep_running, args=(service,), name=service.name)
            thread.start()
            self._threads.append(thread)

    def join(self, timeout_s: float | None = None) -> None:
        for thread in self._threads:
            thread.join(timeout_s)
        if not any(thread.is_alive() for thread in self._threads):
            for resource in self.resources:
                resource.close()
            self.resources.clear()

    def run_until_signalled(self) -> int:
        """Block until SIGTERM or SIGINT (or a worker gave up), then stop every worker and
        wait for them; the exit status: 1 if a worker gave up, else 0."""
        with stop_on_signals(self.stop):
            self.start()
            while not self.stop.wait(0.5):
                pass
            self.join()
        return 1 if self.gave_up is not None else 0
