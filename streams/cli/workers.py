"""``darkroom run`` and ``darkroom worker NAME``: the services, until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import threading
from collections.abc import Sequence
from typing import Any

from processors import KNOWN_OPERATIONS
from streams.config import Settings


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("run", help="run everything (ingest, operations, result writer, webhooks) until SIGTERM")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("worker", help="run one service (ingest, an operation, results, webhooks) until SIGTERM")
    p.add_argument("operation", choices=["ingest", *KNOWN_OPERATIONS, "results", "webhooks"])
    p.set_defaults(func=cmd_worker)


def _run_workers(settings: Settings, names: Sequence[str]) -> int:
    from streams.services import start_when_ready

    # until the supervisor runs, SIGTERM ends the process at once (nothing is in flight)
    supervisor = start_when_ready(settings, names, threading.Event())
    assert supervisor is not None
    supervisor.run_until_signalled()
    return 0


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from streams.services import ALL

    return _run_workers(settings, ALL)


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    return _run_workers(settings, [args.operation])
