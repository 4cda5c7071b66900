"""The sinks' database: each test that asks for ``db`` runs on PostgreSQL and on SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.config import Settings
from streams.sinks.database import Database


@pytest.fixture
def db(database_url: str, tmp_path: Path) -> Iterator[Database]:
    """A fresh database of the engine, migrated; closed after the test."""
    database = Database(Settings(home=tmp_path).replace(database_url=database_url))
    database.migrate()
    yield database
    database.close()
