"""infra/k8s cannot be applied here (no cluster): keep the kustomize base consistent with the code by reading it.

Every name a manifest shares with the code is taken from the code: services and the CLI's
choices, ``DARKROOM_*`` settings, consumer groups and topics (from the spec builders the
workers use), partitions, the health endpoints and the metric names.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock

import pytest
import yaml

from processors import AVAILABLE_OPERATIONS
from processors.upscale import UpscaleConfig
from streams.config import PREFIX, Settings, load_settings
from streams.observe import metrics
from streams.observe.server import app
from streams.runtime import kafka
from streams.runtime.topics import UPLOADED, step_topic
from streams.services import ALL, NOTIFICATIONS

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "infra" / "k8s"
KUSTOMIZATION = K8S / "kustomization.yaml"
SECRET_EXAMPLE = "secret.example.yaml"
CONFIG = "darkroom-config"
SECRET = "darkroom-secrets"
SECRET_SETTINGS = {
    "DARKROOM_DATABASE_URL",
    "DARKROOM_KAFKA_SASL_USERNAME",
    "DARKROOM_KAFKA_SASL_PASSWORD",
    "DARKROOM_S3_ACCESS_KEY",
    "DARKROOM_S3_SECRET_KEY",
    "DARKROOM_WEBHOOK_SECRETS",
}
SECRET_STAND_INS = {
    "DARKROOM_DATABASE_URL": "postgresql://darkroom:x@postgres:5432/darkroom",
    "DARKROOM_KAFKA_SASL_USERNAME": "darkroom",
    "DARKROOM_KAFKA_SASL_PASSWORD": "x",
    "DARKROOM_S3_ACCESS_KEY": "x",
    "DARKROOM_S3_SECRET_KEY": "x",
    "DARKROOM_WEBHOOK_SECRETS": "whsec_" + "A" * 43,
}
"""What the Secret gives every pod, as valid stand-ins (the example's values are placeholders)."""
API = "api"
"""The HTTP API's Deployment: no worker loop, no metrics port (tests/infra checks it)."""
SLOW = {"enhance", "cutout", "upscale"}
"""Operations whose ScaledObject counts only partitions holding lag."""
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
TARGET_LABELS = {"namespace", "pod", "component", "job", "instance"}
"""Labels Prometheus adds to every series (prometheus.yml's relabelling, and its own)."""


def docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def kustomization() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(KUSTOMIZATION.read_text())
    return data


def generator(name: str) -> dict[str, Any]:
    found = [g for g in kustomization().get("configMapGenerator", []) if g["name"] == name]
    assert len(found) == 1, f"one configMapGenerator named {name}"
    return found[0]


def objects(kind: str | None = None) -> list[dict[str, Any]]:
    """The objects of the base: what the kustomization's resources hold."""
    found = [doc for resource in kustomization()["resources"] for doc in docs(K8S / resource)]
    return [doc for doc in found if kind is None or doc["kind"] == kind]


def component(obj: dict[str, Any]) -> str:
    name: str = obj["metadata"]["labels"]["app.kubernetes.io/component"]
    return name


def by_component(kind: str) -> dict[str, dict[str, Any]]:
    found = objects(kind)
    result = {component(obj): obj for obj in found}
    assert len(result) == len(found), f"two {kind}s for one component"
    return result


def config_env() -> dict[str, str]:
    """The literals of the ConfigMap every pod reads."""
    return dict(literal.split("=", 1) for literal in generator(CONFIG)["literals"])


def pod_containers(obj: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = obj["spec"]["template"]["spec"]
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def worker(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def container_env(container: dict[str, Any]) -> dict[str, str]:
    """What the container's DARKROOM_* variables are: the ConfigMap's, overridden by its own ``env``."""
    refs = [ref for source in container.get("envFrom", []) for ref in source.values()]
    base = config_env() if {"name": CONFIG} in refs else {}
    own = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    return {**base, **own}


def deployed_settings(container: dict[str, Any]) -> Settings:
    """The Settings this container starts with (the Secret's values stood in for);
    load_settings refuses unknown names and settings that do not go together."""
    return load_settings(environ={**SECRET_STAND_INS, **container_env(container)})


def entrypoint() -> list[str]:
    match = re.search(r"^ENTRYPOINT (\[.*\])$", (ROOT / "infra" / "Dockerfile").read_text(), re.M)
    assert match is not None
    argv: list[str] = json.loads(match.group(1))
    return argv


def argv(container: dict[str, Any]) -> list[str]:
    """What the container runs: its command (else the image's entrypoint) and its args."""
    return [*container.get("command", entrypoint()), *container.get("args", [])]


def test_the_kustomization_lists_every_manifest_and_nothing_else() -> None:
    resources = kustomization()["resources"]
    assert len(resources) == len(set(resources))
    for resource in resources:
        assert (K8S / resource).is_file(), f"{resource} is listed but does not exist"
    assert SECRET_EXAMPLE not in resources, "the secret example must never be applied"
    generated = {f for g in kustomization().get("configMapGenerator", []) for f in g.get("files", [])}
    for name in generated:
        assert (K8S / name).is_file(), f"{name} is generated from but does not exist"
    manifests = set()
    for path in sorted(K8S.rglob("*")):
        if not path.is_file():
            continue
        relative = path.relative_to(K8S).as_posix()
        if path.suffix in {".yaml", ".yml"}:
            found = docs(path)  # every YAML file parses, several documents or one
            if relative != "kustomization.yaml" and any("kind" in d and "apiVersion" in d for d in found):
                manifests.add(relative)
        assert relative in {"kustomization.yaml", SECRET_EXAMPLE, *resources, *generated}, (
            f"{relative} is neither a resource, a generator's file nor the secret example"
        )
    assert manifests == {*resources, SECRET_EXAMPLE}


def test_every_service_runs_as_its_own_deployment() -> None:
    from streams.cli import build_parser
    from streams.cli.workers import cmd_worker

    deployments = by_component("Deployment")
    assert set(deployments) == {*ALL, NOTIFICATIONS, API}
    for svc, deployment in deployments.items():
        assert deployment["metadata"]["name"] == f"darkroom-{svc}"
        labels = {"app.kubernetes.io/name": "darkroom", "app.kubernetes.io/component": svc}
        assert deployment["metadata"]["labels"] == labels
        assert deployment["spec"]["selector"]["matchLabels"] == labels
        assert deployment["spec"]["template"]["metadata"]["labels"] == labels
        command = argv(worker(deployment))
        if svc == API:
            assert command == ["darkroom", "api"], shlex.join(command)
            continue
        assert command == ["darkroom", "worker", svc], shlex.join(command)
        args = build_parser().parse_args(command[1:])  # a choice of `darkroom worker`
        assert args.func is cmd_worker and args.operation == svc


def test_probes_and_the_metrics_port_agree_with_the_settings_and_the_server() -> None:
    serve = app(lambda: [{"name": "loop", "healthy": True, "ready": True}])

    def answers(path: str) -> tuple[str, dict[str, str]]:
        status: list[Any] = []
        serve({"PATH_INFO": path, "REQUEST_METHOD": "GET"}, lambda *args: status.extend(args))
        return status[0], dict(status[1])

    for svc, deployment in by_component("Deployment").items():
        if svc == API:
            continue
        container = worker(deployment)
        port = deployed_settings(container).metrics_port
        assert port > 0, f"{svc}: DARKROOM_METRICS_PORT must be set for the probes"
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"metrics": port}, svc
        probes = {
            kind: container[kind] for kind in ("startupProbe", "livenessProbe", "readinessProbe") if kind in container
        }
        assert {"livenessProbe", "readinessProbe"} <= set(probes), svc
        expected = {"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"}
        for kind, probe in probes.items():
            get = probe["httpGet"]
            assert get["path"] == expected[kind], f"{svc} {kind}"
            assert ports.get(get["port"], get["port"]) == port, f"{svc} {kind} probes another port"
            status, headers = answers(get["path"])  # the server's own probe, not the metrics exporter
            assert status == "200 OK" and headers["Content-Type"] == "application/json", get["path"]
        liveness = probes["livenessProbe"]
        assert liveness["failureThreshold"] * liveness["periodSeconds"] >= 120, f"{svc}: liveness is not lenient"


def test_every_darkroom_variable_is_a_setting_and_secrets_stay_in_the_secret() -> None:
    known = {PREFIX + name.upper() for name in Settings.model_fields}
    config = config_env()
    assert set(config) <= known, set(config) - known
    assert not set(config) & SECRET_SETTINGS, "a secret in the ConfigMap"
    (secret,) = docs(K8S / SECRET_EXAMPLE)
    assert secret["kind"] == "Secret" and secret["metadata"]["name"] == SECRET
    assert set(secret["stringData"]) == SECRET_SETTINGS
    for obj in [*objects("Deployment"), *objects("Job")]:
        for container in pod_containers(obj):
            names = {e["name"] for e in container.get("env", [])}
            assert {n for n in names if n.startswith(PREFIX)} <= known - SECRET_SETTINGS, container["name"]
            refs = [ref for source in container.get("envFrom", []) for ref in source.values()]
            assert {"name": CONFIG} in refs, f"{container['name']} does not read {CONFIG}"
            deployed_settings(container)  # every value parses
            if container["name"] != "models":  # preparing weights needs no credentials
                assert {"name": SECRET} in refs, f"{container['name']} does not read {SECRET}"


def test_scaled_objects_watch_the_groups_and_topics_the_workers_use(monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.handlers.steps import ingest_spec, operation_spec

    monkeypatch.setattr(kafka, "Consumer", lambda conf: conf)  # what the workers' consumers are configured with
    deployments = {d["metadata"]["name"]: d for d in objects("Deployment")}
    scaled = by_component("ScaledObject")
    assert set(scaled) == {"ingest", *AVAILABLE_OPERATIONS}
    for svc, obj in scaled.items():
        assert obj["apiVersion"] == "keda.sh/v1alpha1"
        target = obj["spec"]["scaleTargetRef"]
        assert target["name"] in deployments, f"{svc} scales a Deployment that does not exist"
        deployment = deployments[target["name"]]
        assert component(deployment) == svc
        assert "replicas" not in deployment["spec"], f"{svc}: the ScaledObject owns the replica count"
        settings = deployed_settings(worker(deployment))
        if svc == "ingest":
            spec: Any = ingest_spec(settings, MagicMock())
            assert spec.topics == (settings.topic(UPLOADED),)
        else:
            spec = operation_spec(settings, MagicMock(), MagicMock(), svc)
            assert spec.topics == (settings.topic(step_topic(svc)),)
        consumer: dict[str, Any] = kafka.make_consumer(settings, spec.group_id)  # type: ignore[assignment]
        (trigger,) = obj["spec"]["triggers"]
        assert trigger["type"] == "kafka"
        meta = trigger["metadata"]
        assert meta["bootstrapServers"] == settings.bootstrap_servers() == settings.kafka_bootstrap
        assert meta["consumerGroup"] == spec.group_id
        assert [meta["topic"]] == list(spec.topics)
        assert meta.get("offsetResetPolicy", "latest") == consumer["auto.offset.reset"]
        assert int(meta["lagThreshold"]) >= 1 and int(meta["activationLagThreshold"]) >= 0
        assert meta.get("limitToPartitionsWithLag") == ("true" if svc in SLOW else None), svc
        assert meta.get("allowIdleConsumers", "false") == "false"
        minimum, maximum = obj["spec"]["minReplicaCount"], obj["spec"]["maxReplicaCount"]
        assert 0 <= minimum <= maximum <= min(settings.partitions, Settings().partitions), svc
        assert minimum == 1 if svc == "ingest" else minimum in (0, 1)
    for svc, deployment in by_component("Deployment").items():
        if svc not in scaled:
            assert 1 <= deployment["spec"]["replicas"] <= deployed_settings(worker(deployment)).partitions


def quantity(value: str | int) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "m": 1e-3, "": 1}
    match = re.fullmatch(r"([0-9.]+)(Ki|Mi|Gi|m|)", str(value))
    assert match is not None, value
    return float(match.group(1)) * units[match.group(2)]


def test_resources_and_grace_periods_fit_the_work() -> None:
    for obj in [*objects("Deployment"), *objects("Job")]:
        for container in pod_containers(obj):
            requests, limits = container["resources"]["requests"], container["resources"]["limits"]
            for resource in ("cpu", "memory"):
                assert quantity(requests[resource]) <= quantity(limits[resource]), (container["name"], resource)
    deployments = by_component("Deployment")
    upscale = worker(deployments["upscale"])["resources"]
    budget = UpscaleConfig(model_dir=Path()).memory_budget_bytes
    assert quantity(upscale["requests"]["memory"]) >= budget + 256 * 2**20, "no headroom over the budget"
    assert quantity(upscale["limits"]["memory"]) >= quantity(upscale["requests"]["memory"]) + 512 * 2**20
    grace = {svc: d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] for svc, d in deployments.items()}
    assert grace["upscale"] >= 600 and all(30 <= g <= grace["upscale"] for g in grace.values())
    assert deployed_settings(worker(deployments["upscale"])).stuck_after_s >= Settings().stuck_after_s


def test_the_database_is_migrated_before_the_sinks_start() -> None:
    from streams.cli import build_parser

    deployments = by_component("Deployment")
    for svc in ("results", "webhooks"):
        (init,) = deployments[svc]["spec"]["template"]["spec"]["initContainers"]
        assert argv(init) == ["darkroom", "migrate"], svc
    build_parser().parse_args(["migrate"])  # a command the CLI has


def labels_of(metric: Any) -> set[str]:
    return set(metric._labelnames)


METRICS = {
    metric._name + ("_total" if metric._type == "counter" else ""): metric
    for metric in vars(metrics).values()
    if hasattr(metric, "_labelnames") and hasattr(metric, "_type")
}


def check_expression(expr: str) -> set[str]:
    """The darkroom metrics ``expr`` reads; each must be exported, and it may group only by their labels."""
    used = set()
    for name in re.findall(r"\bdarkroom_[a-z0-9_]+", expr):
        base = name
        if name not in metrics.NAMES:
            base = next((name.removesuffix(s) for s in HISTOGRAM_SUFFIXES if name.endswith(s)), name)
            assert base in metrics.NAMES and METRICS[base]._type == "histogram", f"{name} is not exported"
        used.add(base)
    targets = re.findall(r"\bup\{", expr)  # Prometheus' own series of each target
    assert used or targets, f"no darkroom metric in {expr!r}"
    assert set(METRICS) == set(metrics.NAMES)
    allowed = TARGET_LABELS | {"le"} | {label for name in used for label in labels_of(METRICS[name])}
    for grouping in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
        for label in filter(None, (part.strip() for part in grouping.split(","))):
            assert label in allowed, f"{expr!r} groups by {label}, which no metric it reads has"
    for label in re.findall(r"([a-z_]+)\s*=~?\s*\"", expr):
        assert label in allowed, f"{expr!r} selects on {label}, which no metric it reads has"
    return used


def expressions(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from expressions(item)


def test_the_dashboard_shows_exported_metrics() -> None:
    (name,) = generator("darkroom-grafana-dashboard")["files"]
    dashboard = json.loads((K8S / name).read_text())
    exprs = list(expressions(dashboard["panels"]))
    used = set().union(*(check_expression(e) for e in exprs))
    assert {
        "darkroom_consumer_lag",
        "darkroom_records_consumed_total",
        "darkroom_step_duration_seconds",
        "darkroom_failures_total",
        "darkroom_webhook_attempts_total",
    } <= used
    assert "histogram_quantile(0.95, sum by (le, operation) (rate(darkroom_step_duration_seconds_bucket[5m])))" in exprs
    assert any("rate(darkroom_records_consumed_total[1m])" in e for e in exprs)


def test_prometheus_scrapes_darkroom_pods_by_label_and_port_name() -> None:
    files = generator("darkroom-prometheus")["files"]
    config = yaml.safe_load((K8S / "prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "darkroom"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert [sd["role"] for sd in job["kubernetes_sd_configs"]] == ["pod"]
    keeps = {tuple(r["source_labels"]): r["regex"] for r in job["relabel_configs"] if r.get("action") == "keep"}
    assert keeps == {
        ("__meta_kubernetes_pod_label_app_kubernetes_io_name",): "darkroom",
        ("__meta_kubernetes_pod_container_port_name",): "metrics",
    }
    targets = {r["target_label"] for r in job["relabel_configs"] if "target_label" in r}
    assert targets <= TARGET_LABELS
    for deployment in objects("Deployment"):
        if component(deployment) == API:
            continue
        template = deployment["spec"]["template"]
        assert template["metadata"]["labels"]["app.kubernetes.io/name"] == "darkroom"
        assert "annotations" not in template["metadata"], "scraping needs no annotations"
        assert "metrics" in {p["name"] for p in worker(deployment)["ports"]}
    rules = [Path(path).name for path in config.get("rule_files", [])]
    assert set(rules) <= set(files)
    for rule_file in rules:
        exprs = list(expressions(yaml.safe_load((K8S / rule_file).read_text())))
        assert exprs
        for expr in exprs:
            check_expression(expr)


def test_config_references_resolve_and_kustomize_renders_the_base() -> None:
    generated = {g["name"] for g in kustomization()["configMapGenerator"]}
    for obj in [*objects("Deployment"), *objects("Job")]:
        for container in pod_containers(obj):
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in generated
                else:
                    assert source["secretRef"]["name"] == SECRET
    kubectl = shutil.which("kubectl")
    if kubectl is None:  # only this rendering needs kubectl
        return
    rendered = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=False)
    assert rendered.returncode == 0, rendered.stderr
    out = [doc for doc in yaml.safe_load_all(rendered.stdout) if doc is not None]
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in out)
    assert ("Secret", SECRET) not in kinds, "the base must not carry the secret"
    (config,) = [d for d in out if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith(f"{CONFIG}-")]
    assert config["data"] == config_env()
    for obj in out:
        if obj["kind"] in {"Deployment", "Job"}:
            for container in pod_containers(obj):
                refs = [s["configMapRef"]["name"] for s in container.get("envFrom", []) if "configMapRef" in s]
                assert refs == [config["metadata"]["name"]], obj["metadata"]["name"]
                assert container["image"].startswith("darkroom")


def test_the_readme_explains_the_base() -> None:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"^## Kubernetes\n(.*?)(?=^## )", readme, re.S | re.M)
    assert match is not None, "no Kubernetes section in the README"
    section = match.group(1)
    for needle in (
        "infra/k8s",
        "kubectl apply -k",
        "secret.example.yaml",
        "DARKROOM_STUCK_AFTER_S",
        "/healthz",
        "/readyz",
    ):
        assert needle in section, needle
