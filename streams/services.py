"""What `darkroom run` / `darkroom worker NAME` start: pipeline workers, sinks, dispatcher."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import closing

from processors import AVAILABLE_OPERATIONS, KNOWN_OPERATIONS
from streams.config import Settings
from streams.handlers.steps import worker_specs
from streams.runtime.supervisor import Service, Supervisor
from streams.sinks import dispatcher
from streams.sinks.database import Database
from streams.sinks.results import results_spec
from streams.wire.events import Serdes

SINKS = ("results", "webhooks")
ALL = ("ingest", *AVAILABLE_OPERATIONS, *SINKS)
NAMES = ("ingest", *KNOWN_OPERATIONS, *SINKS)


def build_supervisor(settings: Settings, names: Sequence[str]) -> Supervisor:
    """A supervisor for the named services; the database is migrated before anything starts."""
    pipeline = [n for n in names if n not in SINKS]
    specs = worker_specs(settings, pipeline)
    services: list[Service] = []
    databases: list[Database] = []
    if any(n in SINKS for n in names):
        with closing(Database(settings)) as db:
            db.migrate()
    if "results" in names:
        databases.append(Database(settings))
        specs.append(results_spec(settings, Serdes(settings), databases[-1], dispatcher.enqueue))
    if "webhooks" in names:
        databases.append(Database(settings))
        services.append(dispatcher.Dispatcher(settings, databases[-1]))
    return Supervisor(settings, specs, services, resources=databases)
