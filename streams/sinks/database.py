"""The one relational-store seam: PostgreSQL (psycopg) or SQLite, same SQL, versioned migrations.

``DARKROOM_DATABASE_URL`` picks the engine: ``postgresql://…`` or ``sqlite:///path``; empty
means SQLite in ``$DARKROOM_HOME/results.sqlite3`` (the embedded default). SQL is written
once with ``?`` placeholders in the subset both engines share (``ON CONFLICT … DO
UPDATE … WHERE``, ``RETURNING``). Migrations are ``streams/sinks/migrations/NNNN_name.sql``,
applied in order, each in its own transaction, recorded in ``schema_migrations``, under a
lock (PostgreSQL: a transaction-level advisory lock; SQLite: ``BEGIN IMMEDIATE``), so
several processes starting together on a fresh database migrate it once.

A connection that breaks (the server restarted, the network dropped) raises
``database_unavailable`` — an outage the worker waits out — and is opened again on the
next transaction.
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

from processors.errors import ConfigurationError
from streams.config import Settings, mask_url
from streams.errors import DatabaseUnavailable

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_MIGRATION_LOCK = 0x6461726B726F6F6D & 0x7FFFFFFFFFFFFFFF
"""Advisory lock key of darkroom's migrations ("darkroom" in ASCII)."""
_SQLITE_OUTAGE = re.compile(r"locked|busy|unable to open|disk|I/O", re.I)
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


def _url(settings: Settings) -> str:
    return settings.database_url.get_secret_value() or f"sqlite:///{settings.home / 'results.sqlite3'}"


def sqlite_path(settings: Settings) -> Path | None:
    """The SQLite file ``settings`` name (the embedded default included); None for PostgreSQL."""
    url = _url(settings)
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


class Database:
    """A connection with darkroom's errors, ``?`` placeholders everywhere, and dict rows.

    One connection per instance, guarded by a lock: each worker thread or process makes
    its own ``Database``.
    """

    def __init__(self, settings: Settings) -> None:
        self.url = _url(settings)
        self.url_for_humans = mask_url(self.url)
        if self.url.startswith(("postgresql://", "postgres://")):
            self.engine = "postgresql"
        elif self.url.startswith("sqlite:///"):
            self.engine = "sqlite"
        else:
            raise ConfigurationError(
                f"DARKROOM_DATABASE_URL must be postgresql://… or sqlite:///…, got {self.url_for_humans!r}"
            )
        self._lock = threading.Lock()
        self._conn: Any = None
        self.transactions = 0
        """Transactions begun through this instance: what tests and benchmarks count writes by."""
        self._connect()

    def _connect(self) -> None:
        try:
            if self.engine == "postgresql":
                self._conn = psycopg.connect(self.url, row_factory=dict_row, connect_timeout=10)
            else:
                path = Path(self.url.removeprefix("sqlite:///"))
                path.parent.mkdir(parents=True, exist_ok=True)
                self._conn = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
                self._conn.row_factory = sqlite3.Row
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA busy_timeout=30000")
        except psycopg.ProgrammingError:  # libpq quotes the bad part of the URL, which may be a password
            raise ConfigurationError(
                f"DARKROOM_DATABASE_URL {self.url_for_humans} is not a valid connection string"
            ) from None
        except (psycopg.Error, sqlite3.Error) as exc:
            raise DatabaseUnavailable(f"cannot open database {self.url_for_humans}: {_connect_failure(exc)}") from None

    def close(self) -> None:
        """Close the connection, after any transaction another thread is in: closing a
        SQLite connection under a running statement can crash the process."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.engine == "postgresql" else sql

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Everything inside commits together or not at all."""
        with self._lock:
            self.transactions += 1
            if self.engine == "postgresql" and self._conn.closed:
                self._connect()
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
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                self._conn.close()  # opened again by the next transaction
                raise DatabaseUnavailable(f"database {self.url_for_humans} failed: {_first_line(exc)}") from None
            except sqlite3.OperationalError as exc:
                if not _SQLITE_OUTAGE.search(str(exc)):
                    raise  # "no such table", a syntax error: a bug, not an outage
                raise DatabaseUnavailable(f"database {self.url_for_humans} failed: {_first_line(exc)}") from None

    def _migration_lock(self, tx: Transaction) -> None:
        """Serialize migrations across processes (SQLite's BEGIN IMMEDIATE already does)."""
        if self.engine == "postgresql":
            tx.query("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))

    def migrate(self) -> list[int]:
        """Apply every migration not applied yet; return the versions applied now."""
        with self.transaction() as tx:
            self._migration_lock(tx)
            tx.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)"
            )
        applied = []
        for version, script in migrations():
            with self.transaction() as tx:
                self._migration_lock(tx)
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


_CONNECT_FAILURES = (
    ("refused", "connection refused"),
    ("timeout expired", "timed out"),
    ("could not translate host name", "unknown host"),
    ("authentication failed", "authentication failed"),
    ("does not exist", "the role or database does not exist"),
)


def _connect_failure(exc: Exception) -> str:
    """Why a connection could not be opened, in darkroom's words: libpq's text may quote
    parameters of the URL (``invalid sslmode value: "…"``), so it never passes through."""
    text = str(exc).lower()
    said = next((said for found, said in _CONNECT_FAILURES if found in text), None)
    return said or f"connection failed ({type(exc).__name__})"


def _first_line(exc: Exception) -> str:
    """psycopg's messages span lines (DETAIL, HINT): one line is enough for a log or an error."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def now_ms() -> int:
    return int(time.time() * 1000)
