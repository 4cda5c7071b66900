"""The rendered kustomize base (``kubectl kustomize infra/k8s``) validated offline: the
Kubernetes objects against Kubernetes' OpenAPI schemas (kubernetes-validate, strict: no
unknown field), the ScaledObjects against KEDA's CRD schema vendored in tests/infra/keda/,
and the pods against what an operator applying it expects: Pod Security "restricted",
a read-only root filesystem with a volume wherever the process writes, a pinned image.
``tests/test_k8s.py`` checks the same base against darkroom's code."""

from __future__ import annotations

import copy
import re
import tomllib
from collections.abc import Iterator
from functools import cache
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from processors.registry import AVAILABLE_OPERATIONS
from tests.infra.tools import HERE, K8S, ROOT, run, tool

KUBERNETES = "1.32"
"""The Kubernetes version validated against: kubectl's here (1.32), well inside what the
base's APIs (apps/v1, policy/v1, networking.k8s.io/v1, batch/v1) serve."""
KEDA_CRD = HERE / "keda" / "keda.sh_scaledobjects.yaml"


@cache
def rendered() -> tuple[dict[str, Any], ...]:
    done = run(tool("kubectl"), "kustomize", str(K8S))
    assert done.returncode == 0, done.stderr
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc is not None)


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [obj for obj in rendered() if obj["kind"] == kind]


def pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    for obj in rendered():
        if obj["kind"] in {"Deployment", "Job", "StatefulSet", "DaemonSet"}:
            yield obj["metadata"]["name"], obj["spec"]["template"]["spec"]


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def test_every_kubernetes_object_is_valid_against_the_schemas() -> None:
    kinds = set()
    for obj in rendered():
        if obj["apiVersion"].startswith("keda.sh/"):
            continue
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)
        kinds.add(obj["kind"])
    assert {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget", "NetworkPolicy"} <= kinds
    assert {"ServiceAccount", "Role", "RoleBinding"} <= kinds


def test_the_validation_can_fail() -> None:
    (deployment, *_) = of_kind("Deployment")
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFileSystem"] = True  # a typo
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES, strict=True)


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """The CRD's schema refusing unknown fields, as the API server's pruning would drop
    them (``kubectl apply`` warns "unknown field"): every object with ``properties`` and no
    ``additionalProperties`` or ``x-kubernetes-preserve-unknown-fields`` gets ``additionalProperties: false``."""
    schema = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(schema)
    return schema


@cache
def scaled_object_schema() -> dict[str, Any]:
    (crd,) = [doc for doc in yaml.safe_load_all(KEDA_CRD.read_text()) if doc]
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    top: dict[str, Any] = strict(version["schema"]["openAPIV3Schema"])
    top["properties"]["metadata"] = {"type": "object"}  # ObjectMeta: checked by Kubernetes, not the CRD
    return top


def test_scaled_objects_are_valid_against_kedas_crd() -> None:
    found = of_kind("ScaledObject")
    assert len(found) == len(AVAILABLE_OPERATIONS) + 1  # ingest and each operation (tests/test_k8s.py names them)
    for obj in found:
        assert obj["apiVersion"] == "keda.sh/v1alpha1"
        jsonschema.validate(obj, scaled_object_schema())
        targets = {d["metadata"]["name"] for d in of_kind("Deployment")}
        assert obj["spec"]["scaleTargetRef"]["name"] in targets
    broken = copy.deepcopy(found[0])
    broken["spec"]["minReplicas"] = 1  # HPA's name, not KEDA's
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, scaled_object_schema())


def test_pods_meet_pod_security_restricted_with_a_read_only_root() -> None:
    for name, spec in pod_specs():
        context = spec["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] > 0, name
        assert context["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec.get("automountServiceAccountToken") is False, name
        mounts_needed = {"/tmp", "/var/lib/darkroom"}
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for container in containers(spec):
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, (name, container["name"])
            assert sc["capabilities"]["drop"] == ["ALL"], (name, container["name"])
            assert sc["readOnlyRootFilesystem"] is True, (name, container["name"])
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            assert mounts_needed <= set(mounts), (name, container["name"], "needs writable /tmp and DARKROOM_HOME")
            for volume in mounts.values():
                assert volume in volumes, (name, volume)


def test_the_image_is_pinned_and_pulled_as_a_release() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for name, spec in pod_specs():
        for container in containers(spec):
            image = container["image"]
            assert re.fullmatch(r"[^:@]+(:[^:@]+|@sha256:[0-9a-f]{64})", image), image
            assert not image.endswith(":latest"), (name, image)
            assert image == f"darkroom:{version}", (name, image)  # the base's pin (an overlay changes it)


def test_every_service_has_a_deployment_a_budget_and_the_api_a_service() -> None:
    from processors import AVAILABLE_OPERATIONS
    from streams.cli import build_parser

    deployments = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in of_kind("Deployment")}
    services = {"ingest", *AVAILABLE_OPERATIONS, "results", "webhooks", "notifications"}
    for svc in services:
        build_parser().parse_args(["worker", svc])  # every one a choice of `darkroom worker`
    assert set(deployments) == services | {"api"}
    budgets = {b["metadata"]["name"]: b for b in of_kind("PodDisruptionBudget")}
    for component, deployment in deployments.items():
        selector = deployment["spec"]["selector"]["matchLabels"]
        covering = [b for b in budgets.values() if b["spec"]["selector"]["matchLabels"] == selector]
        assert len(covering) == 1, component
    (service,) = of_kind("Service")
    assert service["spec"]["selector"] == deployments["api"]["spec"]["selector"]["matchLabels"]
    (api,) = deployments["api"]["spec"]["template"]["spec"]["containers"]
    assert api["args"] == ["api"]
    port = {p["name"]: p["containerPort"] for p in api["ports"]}[service["spec"]["ports"][0]["targetPort"]]
    env = {e["name"]: e["value"] for e in api["env"]}
    assert int(env["DARKROOM_API_PORT"]) == port
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert api[probe]["httpGet"] == {"path": "/healthz", "port": "http"}


def test_the_migration_is_an_init_container_so_reapplying_a_new_image_is_accepted() -> None:
    assert not of_kind("Job"), "a Job's pod template is immutable: a re-apply with a new image is refused"
    migrating = {name for name, spec in pod_specs() for c in spec.get("initContainers", []) if c["args"] == ["migrate"]}
    assert migrating == {"darkroom-results", "darkroom-webhooks"}


def test_upscale_has_a_models_volume_its_init_container_fills() -> None:
    (spec,) = [s for name, s in pod_specs() if name == "darkroom-upscale"]
    (init,) = spec["initContainers"]
    assert init["args"][:3] == ["models", "fetch", "all"]
    (worker,) = spec["containers"]
    for container in (init, worker):
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts["/var/lib/darkroom/models"] == "models"
    assert "models" in {v["name"] for v in spec["volumes"]}


def test_network_policies_admit_the_api_and_metrics_and_reach_only_the_dependencies() -> None:
    policies = {p["metadata"]["name"]: p["spec"] for p in of_kind("NetworkPolicy")}
    default = policies["darkroom-default"]
    assert default["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "darkroom"}}
    assert set(default["policyTypes"]) == {"Ingress", "Egress"}
    ingress_ports = {p["port"] for p in default["ingress"][0]["ports"]}
    assert ingress_ports == {"metrics"}
    assert {p["port"] for rule in policies["darkroom-api"]["ingress"] for p in rule["ports"]} == {"http"}
    egress = {(p["protocol"], p["port"]) for rule in default["egress"] for p in rule["ports"]}
    assert {("UDP", 53), ("TCP", 53), ("TCP", 9092), ("TCP", 8081), ("TCP", 9000), ("TCP", 5432)} == egress
    config = next(c for c in of_kind("ConfigMap") if c["metadata"]["name"].startswith("darkroom-config-"))["data"]
    for address in (config["DARKROOM_KAFKA_BOOTSTRAP"], config["DARKROOM_S3_ENDPOINT"]):
        assert ("TCP", int(address.rsplit(":", 1)[1])) in egress, address
    hooks = policies["darkroom-webhook-targets"]
    assert hooks["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "webhooks"
    blocks = [to["ipBlock"] for rule in hooks["egress"] for to in rule["to"]]
    v4 = next(b for b in blocks if b["cidr"] == "0.0.0.0/0")
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "127.0.0.0/8"} <= set(v4["except"])


def test_prometheus_may_discover_the_pods() -> None:
    (role,) = of_kind("Role")
    (rule,) = role["rules"]
    assert rule["resources"] == ["pods"] and set(rule["verbs"]) == {"get", "list", "watch"}
    (binding,) = of_kind("RoleBinding")
    (account,) = of_kind("ServiceAccount")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"]}]
