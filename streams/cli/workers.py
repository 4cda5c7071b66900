"""``darkroom run`` and ``darkroom worker NAME``: the services, until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import os
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from processors import KNOWN_OPERATIONS
from streams.config import Settings


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run everything (ingest, operations, result writer, webhooks) until SIGTERM",
        description="Run every service until SIGTERM. With more than one process for a service, each service"
        " instance is a `darkroom worker NAME` process under one supervisor, which restarts crashed ones.",
    )
    p.add_argument(
        "--processes",
        metavar="NAME=N,…",
        help="processes per service, e.g. thumbnail=4,upscale=1 (DARKROOM_PROCESSES; default: enhance and"
        " thumbnail get half the CPUs, the others one; 0 runs none)",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "migrate", help="create or upgrade the result database, then exit (run once before the workers start)"
    )
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("worker", help="run one service (ingest, an operation, results, webhooks) until SIGTERM")
    p.add_argument("operation", choices=["ingest", *KNOWN_OPERATIONS, "results", "webhooks", "notifications"])
    p.set_defaults(func=cmd_worker)


def _report_health(settings: Settings) -> None:
    """Serve the endpoint, or (a child of ``run --processes``) write snapshots for the supervisor's."""
    from streams.observe import health, metrics, server
    from streams.runtime.processes import SNAPSHOT_EVERY_S

    directory = os.environ.get(metrics.MULTIPROC_ENV)
    if settings.metrics_port:
        server.start(settings.metrics_port, settings.stuck_after_s, host=settings.metrics_host)
    elif directory:
        path = health.snapshot_path(Path(directory), os.getpid())

        def write() -> None:
            while True:
                health.HEALTH.write_snapshot(path, settings.stuck_after_s)
                threading.Event().wait(SNAPSHOT_EVERY_S)

        threading.Thread(target=write, name="health-snapshots", daemon=True).start()


def _run_workers(settings: Settings, names: Sequence[str], stop: threading.Event | None = None) -> int:
    """Start the services ``names`` in this process and run them until a signal. A SIGTERM
    while starting (topics, migrations, waiting for the broker) ends the start and the
    process with 0: nothing is in flight yet."""
    from streams.observe import metrics
    from streams.runtime.supervisor import stop_on_signals
    from streams.services import start_when_ready

    stop = stop or threading.Event()
    with stop_on_signals(stop):
        metrics.services_at_zero(names)  # before the first scrape: increase() then sees the first event
        _report_health(settings)
        supervisor = start_when_ready(settings, names, stop)
    if supervisor is None or stop.is_set():
        return 0
    return supervisor.run_until_signalled()


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from streams.runtime.supervisor import stop_on_signals
    from streams.services import ALL, NOTIFICATIONS, children, process_counts

    names = (*ALL, NOTIFICATIONS) if settings.notifications_topic else ALL
    given = settings.processes if args.processes is None else _process_counts(args.processes)
    counts = process_counts(given, names)
    stop = threading.Event()
    with stop_on_signals(stop):  # from the API's first answer: a SIGTERM before the services run ends with 0
        if settings.api_port:  # the HTTP API on a thread of this process (README, *HTTP API*)
            from streams.api.server import serve_in_background

            serve_in_background(settings)
        if not given and all(count <= 1 for count in counts.values()):  # one process of threads, as before
            return _run_workers(settings, [name for name in names if counts[name]], stop)
        from streams.runtime.processes import ProcessSupervisor, use_multiprocess_metrics

        directory = settings.home / "run" / f"metrics-{os.getpid()}"
        use_multiprocess_metrics(directory)
        supervisor = ProcessSupervisor(children(settings, counts), directory)
        if settings.metrics_port:
            supervisor.serve(settings.metrics_port, settings.stuck_after_s, settings.metrics_host)
    try:
        return 0 if stop.is_set() else supervisor.run_until_signalled()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _process_counts(raw: str) -> dict[str, int]:
    """``--processes`` as ``DARKROOM_PROCESSES`` reads it."""
    from processors.errors import ConfigurationError
    from streams.config import parse_process_counts

    try:
        return parse_process_counts(raw)
    except ValueError as exc:
        raise ConfigurationError(f"invalid --processes: {exc}") from None


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    return _run_workers(settings, [args.operation])


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from streams.sinks.database import Database

    db = Database(settings)
    try:
        applied = db.migrate()
    finally:
        db.close()
    print(f"applied migrations {', '.join(map(str, applied))}" if applied else "the result database is up to date")
    return 0
