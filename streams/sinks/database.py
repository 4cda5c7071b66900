"""The one relational-store seam: PostgreSQL (psycopg) or SQLite, same SQL, versioned migrations.

``DARKROOM_DATABASE_URL`` picks the engine: ``postgresql://…`` or ``sqlite:///path``; empty
means SQLite in ``$DARKROOM_HOME/results.sqlite3`` (the embedded default). SQL is written
once with ``?`` placeholders in the subset both engines share (``ON CONFLICT … DO
UPDATE … WHERE``, ``RETURNING``). Migrations are ``streams/sinks/migrations/NNNN_name.sql``,
applied in order, each in its own transaction, recorded in ``schema_migrations``.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from processors.errors import ConfigurationError, StorageUnavailable
from streams.config import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_MIGRATION_NAME = re.compile(r"^(\d{4})_\w+\.sql$")
Row = dict[str, Any]


def migrations(directory: Path = MIGRATIONS_DIR) -> list[tuple[int, str]]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if not match:
            raise ConfigurationError(f"migration {path.name} is not named NNNN_name.sql")
        found.append((int(match[1]), path.read_text()))
    return found


def _statements(script: str) -> list[str]:
    without_comments = "\n".join(line.split("--")[0] for line in script.splitlines())
    return [s.strip() for s in without_comments.split(";") if s.strip()]


class Database:
    """A connection with darkroom's errors, ``?`` placeholders everywhere, and dict rows.

    One connection per instance, guarded by a lock: each worker thread or process makes
    its own ``Database``.
    """

    def __init__(self, settings: Settings) -> None:
        url = settings.database_url or f"sqlite:///{settings.home / 'results.sqlite3'}"
        self.url_for_humans = re.sub(r"//[^@/]*@", "//***@", url)  # never show credentials
        self._lock = threading.Lock()
        try:
            if url.startswith(("postgresql://", "postgres://")):
                self.engine = "postgresql"
                self._conn: Any = psycopg.connect(url, row_factory=dict_row, connect_timeout=10)
            elif url.startswith("sqlite:///"):
                path = Path(url.removeprefix("sqlite:///"))
                path.parent.mkdir(parents=True, exist_ok=True)
                self.engine = "sqlite"
                self._conn = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
                self._conn.row_factory = sqlite3.Row
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA busy_timeout=30000")
            else:
                raise ConfigurationError(f"DARKROOM_DATABASE_URL must be postgresql://… or sqlite:///…, got {url!r}")
        except ConfigurationError:
            raise
        except (psycopg.Error, sqlite3.Error) as exc:
            raise StorageUnavailable(f"cannot open database {self.url_for_humans}: {exc}") from None

    def close(self) -> None:
        self._conn.close()

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.engine == "postgresql" else sql

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Everything inside commits together or not at all."""
        with self._lock:
            try:
                if self.engine == "sqlite":
                    self._conn.execute("BEGIN IMMEDIATE")
                    try:
                        yield Transaction(self)
                    except BaseException:
                        self._conn.execute("ROLLBACK")
                        raise
                    self._conn.execute("COMMIT")
                else:
                    with self._conn.transaction():
                        yield Transaction(self)
            except (sqlite3.OperationalError, psycopg.OperationalError) as exc:
                raise StorageUnavailable(f"database {self.url_for_humans} failed: {exc}") from None

    def migrate(self) -> list[int]:
        """Apply every migration not applied yet; return the versions applied now."""
        with self.transaction() as tx:
            tx.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)"
            )
        applied = []
        for version, script in migrations():
            with self.transaction() as tx:
                if tx.query("SELECT version FROM schema_migrations WHERE version = ?", (version,)):
                    continue
                for statement in _statements(script):
                    tx.execute(statement)
                tx.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)", (version, now_ms()))
                applied.append(version)
        return applied


class Transaction:
    def __init__(self, db: Database) -> None:
        self._db = db

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; return the number of rows it changed."""
        cursor = self._db._conn.execute(self._db._sql(sql), tuple(params))
        return int(cursor.rowcount)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        cursor = self._db._conn.execute(self._db._sql(sql), tuple(params))
        return [dict(row) for row in cursor.fetchall()]


def now_ms() -> int:
    return int(time.time() * 1000)
