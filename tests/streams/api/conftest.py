"""A real uvicorn serving the API on a free port, on the embedded stack with ingest,
thumbnail and the result writer running: what a team without Kafka would talk to.

One server per module (starting the workers and their consumer groups is the slow part),
on topics and a SQLite result store of its own.
"""

from __future__ import annotations

import io
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from PIL import Image

from streams.api import keys
from streams.api.app import create_app
from streams.config import Settings, load_settings
from streams.handlers.steps import worker_specs
from streams.runtime.supervisor import Supervisor
from streams.runtime.topics import ensure_topics
from streams.sinks.database import Database
from streams.sinks.results import results_spec
from streams.wire.events import Serdes


def tiny_png(size: int = 0) -> bytes:
    """A 1×1 PNG, padded with zeros to ``size`` bytes: what a direct upload takes (the API
    reads an image's header alone) where the bytes are not the point, in any size."""
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, "PNG")
    return buffer.getvalue().ljust(size, b"\0")


@dataclass
class Server:
    url: str
    settings: Settings
    db: Database
    token: str
    """A key of tenant ``acme``."""
    other_token: str
    """A key of tenant ``globex``."""

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}


def serve(app: FastAPI) -> tuple[uvicorn.Server, threading.Thread, str]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, name="api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, thread, f"http://127.0.0.1:{port}"


def running(settings: Settings) -> Iterator[Server]:
    """The API on ``settings`` (migrated store, two tenants' keys), stopped afterwards."""
    app = create_app(settings)
    db = Database(settings)
    _, token = keys.create(db, "acme")
    _, other = keys.create(db, "globex")
    server, thread, url = serve(app)
    try:
        yield Server(url, settings, db, token, other)
    finally:
        server.should_exit = True
        thread.join(30)
        db.close()


def _settings(stack_settings: Settings, home: Path, **changes: object) -> Settings:
    settings = stack_settings.replace(
        topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        storage_backoff_s=0.05,
        database_url=f"sqlite:///{home / 'results.sqlite3'}",
        **changes,  # type: ignore[arg-type]
    )
    ensure_topics(settings)
    return settings


def with_workers(settings: Settings) -> Iterator[Server]:
    """The API with ingest, thumbnail and the result writer behind it."""
    sink_db = Database(settings)
    sink_db.migrate()
    supervisor = Supervisor(
        settings,
        [*worker_specs(settings, ["ingest", "thumbnail"]), results_spec(settings, Serdes(settings), sink_db)],
        resources=[sink_db],
    )
    supervisor.start()
    try:
        yield from running(settings)
    finally:
        supervisor.stop.set()
        supervisor.join(30)


@pytest.fixture(scope="module")
def api(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from with_workers(_settings(stack_settings, tmp_path_factory.mktemp("api")))


@pytest.fixture(scope="module")
def busy_api(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """With workers, and without a practical rate limit: for generated requests."""
    yield from with_workers(_settings(stack_settings, tmp_path_factory.mktemp("busy"), api_rate_per_minute=10**6))


@pytest.fixture(scope="module")
def small_api(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """An API with tight limits (no workers): 64 KiB bodies, 5 requests per minute."""
    settings = _settings(
        stack_settings, tmp_path_factory.mktemp("small-api"), max_file_bytes=64 * 1024, api_rate_per_minute=5
    )
    yield from running(settings)


@pytest.fixture(scope="module")
def open_api(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """An API without workers and without a rate limit, for 1 KiB images: for many requests
    that need no processing (what the routes and the bounds answer)."""
    settings = _settings(
        stack_settings, tmp_path_factory.mktemp("open-api"), max_file_bytes=1024, api_rate_per_minute=0
    )
    yield from running(settings)


@pytest.fixture(scope="module")
def public_api(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """An API without workers whose links are under a public base URL (``DARKROOM_API_PUBLIC_URL``)."""
    settings = _settings(
        stack_settings,
        tmp_path_factory.mktemp("public-api"),
        api_public_url="https://images.example.com/darkroom/",
        api_rate_per_minute=0,
    )
    yield from running(settings)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    """A migrated SQLite result store, no server: for the parts of the API that only keep state."""
    database = Database(load_settings(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'results.sqlite3'}"))
    database.migrate()
    yield database
    database.close()
