"""infra/docker-compose.yml cannot run here (no Docker engine); keep it consistent by reading it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from streams.config import PREFIX, Settings, load_settings
from streams.notifications import rules

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "infra" / "docker-compose.yml"


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def test_the_stack_has_every_service_the_product_needs() -> None:
    services = compose()["services"]
    expected = {"kafka", "schema-registry", "minio", "minio-init", "postgres", "worker-ingest", "worker-thumbnail"}
    assert expected | {"worker-results", "worker-webhooks"} <= set(services)
    kafka = services["kafka"]["environment"]
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    assert "zookeeper" not in services
    assert "mb --ignore-existing local/darkroom" in services["minio-init"]["command"][0]


def test_dependencies_name_existing_services() -> None:
    services = compose()["services"]
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown service {dependency}"


def test_worker_settings_are_real_darkroom_settings_and_secrets_come_from_the_environment() -> None:
    known = {PREFIX + name.upper() for name in Settings.model_fields}
    for name, service in compose()["services"].items():
        if not name.startswith("worker-"):
            continue
        env = service["environment"]
        assert set(env) <= known, set(env) - known
        assert env["DARKROOM_BUCKET"] == "darkroom"
        for secret in ("DARKROOM_S3_ACCESS_KEY", "DARKROOM_S3_SECRET_KEY", "DARKROOM_WEBHOOK_SECRETS"):
            assert re.fullmatch(r"\$\{[A-Z_]+:\?.+\}", env[secret]), f"{secret} must come from the environment"
        assert "${POSTGRES_PASSWORD:?" in env["DARKROOM_DATABASE_URL"]
        assert service["command"][0] == "worker"


def test_the_worker_image_installs_the_project() -> None:
    dockerfile = (ROOT / "infra" / "Dockerfile").read_text()
    for path in ("streams", "processors", "schemas", "constraints.txt", "pyproject.toml"):
        assert path in dockerfile
    assert 'ENTRYPOINT ["darkroom"]' in dockerfile
    # the image runs the built wheel (schemas and migrations inside), not an editable checkout
    assert "pip wheel" in dockerfile and "pip install --no-cache-dir /dist/darkroom-" in dockerfile
    assert " -e " not in dockerfile


def test_minio_sends_its_bucket_notifications_where_the_notifications_worker_reads() -> None:
    services = compose()["services"]
    worker = services["worker-notifications"]
    assert worker["command"] == ["worker", "notifications"]
    given = {k: v for k, v in worker["environment"].items() if not str(v).startswith("${")}  # from infra/.env
    settings = load_settings(environ=given)
    assert settings.notifications_topic and rules.load(settings)  # the rules in the file are valid
    minio = services["minio"]["environment"]
    target = next(
        k.removeprefix("MINIO_NOTIFY_KAFKA_ENABLE_") for k in minio if k.startswith("MINIO_NOTIFY_KAFKA_ENABLE_")
    )
    assert minio[f"MINIO_NOTIFY_KAFKA_ENABLE_{target}"] == "on"
    assert minio[f"MINIO_NOTIFY_KAFKA_BROKERS_{target}"] == settings.kafka_bootstrap
    assert minio[f"MINIO_NOTIFY_KAFKA_TOPIC_{target}"] == settings.notifications_topic
    assert minio[f"MINIO_NOTIFY_KAFKA_QUEUE_DIR_{target}"]  # events survive a broker outage
    subscribe = f"mc event add --ignore-existing local/{settings.bucket} arn:minio:sqs::{target}:kafka --event put"
    assert subscribe in services["minio-init"]["command"][0]
