"""What every command shares: exit codes, JSON output, the migrated result store."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from streams.config import Settings, mask_url

if TYPE_CHECKING:
    from streams.sinks.database import Database

EXIT_FAILED = 1
EXIT_USAGE = 2


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=None, default=str, sort_keys=True))


def shown(deliveries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Delivery rows fit for a terminal: target URLs may carry tokens, so only masked."""
    return [{**row, "url": mask_url(row["url"])} for row in deliveries]


def open_database(settings: Settings) -> Database:
    """The migrated result store, created where it does not exist yet."""
    from streams.sinks.database import Database

    db = Database(settings)
    db.migrate()
    return db


def existing_database(settings: Settings) -> Database | None:
    """The result store for a read-only command: None where the SQLite file does not exist
    yet (nothing is recorded), so that reading creates nothing."""
    from streams.sinks.database import sqlite_path

    path = sqlite_path(settings)
    return None if path is not None and not path.exists() else open_database(settings)
