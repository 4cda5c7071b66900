"""What `darkroom run` / `darkroom worker NAME` start: pipeline workers, sinks, dispatcher."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import closing

import structlog

from processors import AVAILABLE_OPERATIONS
from processors.errors import ConfigurationError
from processors.upscale.host import usable_cpus
from streams.config import SERVICE_NAMES, Settings
from streams.errors import DependencyUnavailable
from streams.handlers.steps import worker_specs
from streams.notifications.worker import notifications_spec
from streams.runtime.processes import Child
from streams.runtime.retry import Backoff
from streams.runtime.supervisor import Service, Supervisor
from streams.runtime.topics import ensure_topics
from streams.sinks import dispatcher, outbox
from streams.sinks.database import Database
from streams.sinks.results import results_spec
from streams.wire.events import Serdes

_log = structlog.get_logger("darkroom.services")
SINKS = ("results", "webhooks")
ALL = ("ingest", *AVAILABLE_OPERATIONS, *SINKS)
NOTIFICATIONS = "notifications"
"""MinIO bucket notifications → uploads; `run` starts it when DARKROOM_NOTIFICATIONS_TOPIC is set."""
NAMES = SERVICE_NAMES
_CPU_BOUND = ("enhance", "thumbnail")
"""Services whose default process count grows with the CPUs (half of them: the broker and
the object store often share the machine). Upscale keeps one: its torch threads already
use every core."""


def cpus() -> int:
    """CPUs this process may use: affinity, capped by a container's cgroup CPU quota."""
    return usable_cpus()


def process_counts(given: Mapping[str, int], names: Sequence[str]) -> dict[str, int]:
    """How many processes each of ``names`` gets: ``given`` (``DARKROOM_PROCESSES`` or
    ``run --processes``, parsed by ``streams.config.parse_process_counts``; 0 runs none)
    over the defaults."""
    others = sorted(set(given) - set(names))
    if others:
        raise ConfigurationError(f"invalid process counts: {', '.join(others)} not among {', '.join(names)}")
    return {name: max(1, cpus() // 2) if name in _CPU_BOUND else 1 for name in names} | dict(given)


def children(settings: Settings, counts: dict[str, int]) -> list[Child]:
    """One ``darkroom worker NAME`` per process; upscale's share the CPUs' torch threads,
    and with static membership each gets an instance id of its own."""
    found = []
    for name, count in counts.items():
        for index in range(count):
            env = {"DARKROOM_METRICS_PORT": "0"}
            if settings.instance_id:
                env["DARKROOM_INSTANCE_ID"] = f"{settings.instance_id}.{index}"
            if name == "upscale":
                env["OMP_NUM_THREADS"] = str(max(1, cpus() // count))
            found.append(Child(name, ("worker", name), env))
    return found


def start_when_ready(settings: Settings, names: Sequence[str], stop: threading.Event) -> Supervisor | None:
    """Provision topics, migrate the database and build the supervisor, waiting out an
    outage instead of exiting: a worker restarted while the broker or the database is
    down starts once they answer (None if ``stop`` is set first). With
    ``start_timeout_s`` the outage is raised once it has lasted that long."""
    backoff = Backoff(settings.retry_backoff_s, settings.retry_max_backoff_s)
    started = time.monotonic()
    while not stop.is_set():
        left = settings.start_timeout_s - (time.monotonic() - started)
        try:
            ensure_topics(settings, timeout_s=max(1.0, min(15.0, left)) if settings.start_timeout_s else 15.0)
            return build_supervisor(settings, names)
        except DependencyUnavailable as exc:
            if settings.start_timeout_s and time.monotonic() - started >= settings.start_timeout_s:
                raise
            delay = backoff.next()
            _log.warning("dependency unavailable at start; waiting", error_code=exc.code, error=exc.message)
            stop.wait(delay)
    return None


def build_supervisor(settings: Settings, names: Sequence[str]) -> Supervisor:
    """A supervisor for the named services; the database is migrated before anything starts."""
    pipeline = [n for n in names if n not in SINKS and n != NOTIFICATIONS]
    specs = worker_specs(settings, pipeline)
    if NOTIFICATIONS in names:
        specs.append(notifications_spec(settings))
    services: list[Service] = []
    databases: list[Database] = []
    if any(n in SINKS for n in names):
        with closing(Database(settings)) as db:
            db.migrate()
    if "results" in names:
        databases.append(Database(settings))
        specs.append(results_spec(settings, Serdes(settings), databases[-1], outbox.enqueue))
    if "webhooks" in names:
        databases.append(Database(settings))
        services.append(dispatcher.Dispatcher(settings, databases[-1]))
    return Supervisor(settings, specs, services, resources=databases)
