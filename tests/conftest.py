"""Session-wide services for integration tests.

Order of preference: services named in ``DARKROOM_KAFKA_BOOTSTRAP`` / ``DARKROOM_S3_ENDPOINT``;
else testcontainers (Kafka + MinIO) when a Docker engine answers; else the embedded stack
(tansu + SeaweedFS from the pinned wheels) on free loopback ports in a temporary home.
Each test gets its own topic prefix and consumer groups, so tests never see each other's
records.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.config import Settings, load_settings
from streams.dev.stack import Stack, throwaway_settings
from streams.handlers.steps import worker_specs
from streams.runtime.storage import ObjectStore
from streams.runtime.supervisor import Supervisor
from streams.runtime.topics import ensure_topics
from tests.helpers import PrivatePostgres

_POSTGRES_FIXTURES = frozenset({"postgres_url", "private_postgres", "private_postgres_url"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that takes a PostgreSQL fixture ``postgres`` (``database_url`` only in its
    PostgreSQL half), so the marker can never go missing."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        on_postgresql = callspec is not None and callspec.params.get("database_url") == "postgresql"
        if _POSTGRES_FIXTURES & names or on_postgresql:
            item.add_marker(pytest.mark.postgres)


def _docker_available() -> bool:
    if not os.environ.get("DOCKER_HOST") and not os.path.exists("/var/run/docker.sock"):
        return False
    import docker

    try:
        client = docker.from_env(timeout=3)
    except docker.errors.DockerException:
        return False
    try:
        return bool(client.ping())
    except docker.errors.DockerException:
        return False
    finally:
        client.close()


@pytest.fixture(scope="session")
def stack_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    base = load_settings(home=tmp_path_factory.mktemp("darkroom-home"), session_timeout_ms=6000, log_format="json")
    if base.kafka_bootstrap and base.s3_endpoint:
        ObjectStore(base).ensure_bucket(base.bucket)
        yield base
        return
    if _docker_available():
        from testcontainers.kafka import KafkaContainer
        from testcontainers.minio import MinioContainer

        with KafkaContainer().with_kraft() as kafka, MinioContainer() as minio:
            cfg = minio.get_config()
            settings = base.replace(
                kafka_bootstrap=kafka.get_bootstrap_server(),
                s3_endpoint=cfg["endpoint"],
                s3_access_key=cfg["access_key"],
                s3_secret_key=cfg["secret_key"],
            )
            ObjectStore(settings).ensure_bucket(settings.bucket)
            yield settings
        return
    settings = throwaway_settings(base, base.home)
    stack = Stack(settings)
    stack.up()
    try:
        yield settings
    finally:
        stack.down()


@pytest.fixture
def settings(stack_settings: Settings) -> Settings:
    """Per-test settings: fresh topics and consumer groups under a unique prefix."""
    s = stack_settings.replace(topic_prefix=f"t{uuid.uuid4().hex[:10]}.", storage_backoff_s=0.05)
    ensure_topics(s)
    return s


@pytest.fixture
def store(settings: Settings) -> ObjectStore:
    return ObjectStore(settings)


@pytest.fixture
def workers(settings: Settings) -> Iterator[Supervisor]:
    """Ingest and thumbnail workers on the test's topics, stopped after the test."""
    supervisor = Supervisor(settings, worker_specs(settings, ["ingest", "thumbnail"]))
    supervisor.start()
    yield supervisor
    supervisor.stop.set()
    supervisor.join(30)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty database on the machine's PostgreSQL (or DARKROOM_TEST_POSTGRES_URL's server)."""
    import psycopg

    admin_url = os.environ.get("DARKROOM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"darkroom_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[PrivatePostgres]:
    """A PostgreSQL cluster for the tests that stop it (tests/helpers.py::PrivatePostgres),
    in a directory of /tmp the postgres user can reach (pytest's own are root's alone)."""
    from streams.dev.stack import free_port_block

    root = Path(tempfile.mkdtemp(prefix="darkroom-pg-"))
    cluster = PrivatePostgres(root, free_port_block(1)[0])
    cluster.start()
    try:
        yield cluster
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):  # a test left it stopped
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def private_postgres_url(private_postgres: PrivatePostgres) -> str:
    """A fresh database on the private cluster (which the test may stop and start)."""
    import psycopg

    name = f"darkroom_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(private_postgres.url(), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    return private_postgres.url(name)


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each result-store test runs on PostgreSQL and on SQLite (the embedded default)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'results.sqlite3'}"
    url: str = request.getfixturevalue("postgres_url")
    return url
