"""Where the operations tools the infra tests run are: each from a package the project
installs (``.ci/run`` installs Debian's ``prometheus`` for promtool; the others are test
dependencies in pyproject.toml), never from a download at test time."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
K8S = INFRA / "k8s"
HERE = Path(__file__).resolve().parent


def tool(name: str) -> str:
    """The tool's path: the venv's bin first (wheels put theirs there), then PATH. Missing
    is a failure under CI (it must be installed there), a skip on a developer's machine."""
    found = Path(sys.executable).with_name(name)
    path = str(found) if found.is_file() else shutil.which(name)
    if path is None:
        message = f"{name} is not installed (README, *Tests and benchmarks*)"
        if _in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return path


def _in_ci() -> bool:
    import os

    return bool(os.environ.get("CI"))


def run(*argv: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)
