"""The built wheel is a working darkroom, not only the editable checkout.

The wheel is built from a copy of the sources (nothing written into the checkout) and
installed into a fresh virtual environment. Its third-party dependencies are borrowed
from the running environment through a path entry, which does not process that
environment's ``.pth`` files: the editable install's finder is not loaded, so every
``streams``/``processors`` import must come from the wheel, and the commands run from a
directory outside the checkout. SeaweedFS's ``weed`` is a script of its own wheel and is
found on PATH, as it would be in that wheel's environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.config import load_settings
from streams.dev.samples import photo_jpeg
from streams.dev.stack import throwaway_settings

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "constraints.txt", "schemas", "streams", "processors")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(
                ROOT / name, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )
        else:
            shutil.copy2(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("darkroom-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    env_dir = tmp_path_factory.mktemp("venv")
    venv.create(env_dir, with_pip=False)
    site = Path(
        subprocess.run(
            [env_dir / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (site / "borrowed-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(env_dir / "bin" / "python"),
            "install",
            "-q",
            "--no-deps",
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    yield env_dir


def _run(env_dir: Path, cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    path = f"{env_dir / 'bin'}:{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
    return subprocess.run(
        [str(env_dir / "bin" / "darkroom"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": path, "HOME": str(cwd), **env},
    )


def test_the_wheel_carries_every_module_schema_and_migration(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in ("streams", "processors"):
        for path in (ROOT / package).rglob("*.py"):
            assert path.relative_to(ROOT).as_posix() in names
    for schema in (ROOT / "schemas").glob("*.avsc"):
        assert f"streams/wire/schemas/{schema.name}" in names
    migrations = list((ROOT / "streams" / "sinks" / "migrations").glob("*.sql"))
    assert migrations
    for migration in migrations:
        assert f"streams/sinks/migrations/{migration.name}" in names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "darkroom = streams.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_the_installed_wheel_imports_nothing_from_the_checkout(installed: Path, tmp_path: Path) -> None:
    code = "import streams, processors, streams.wire.serde as s;"
    code += " print(streams.__file__, processors.__file__, s.SCHEMA_DIR)"
    out = subprocess.run(
        [installed / "bin" / "python", "-c", code], cwd=tmp_path, check=True, capture_output=True, text=True
    ).stdout
    assert str(ROOT) not in out
    assert out.count(str(installed)) == 3


def test_the_installed_wheel_processes_a_file(installed: Path, tmp_path: Path) -> None:
    (tmp_path / "photo.jpg").write_bytes(photo_jpeg(320, 240, seed=1))
    done = _run(installed, tmp_path, "process", "thumbnail:sizes=64", "photo.jpg", "out.webp")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out.webp").read_bytes()[8:12] == b"WEBP"


def test_the_installed_wheel_lists_models(installed: Path, tmp_path: Path) -> None:
    done = _run(installed, tmp_path, "models", "list", "--json", DARKROOM_HOME=str(tmp_path / "home"))
    assert done.returncode == 0, done.stderr
    assert '"RealESRGAN_x4plus"' in done.stdout


@pytest.mark.integration
def test_the_installed_wheel_runs_the_stack_and_migrates_the_result_store(installed: Path, tmp_path: Path) -> None:
    ports = throwaway_settings(load_settings(), tmp_path / "home")
    env = {
        "DARKROOM_HOME": str(ports.home),
        **{
            f"DARKROOM_{name.upper()}": str(getattr(ports, name))
            for name in (
                "kafka_port",
                "s3_port",
                "weed_master_port",
                "weed_volume_port",
                "weed_filer_port",
                "weed_admin_port",
            )
        },
    }
    try:
        up = _run(installed, tmp_path, "stack", "up", "--json", **env)
        assert up.returncode == 0, up.stderr
        assert _run(installed, tmp_path, "stack", "status", **env).returncode == 0
        # a read of the result store migrates it: the SQL files must be in the wheel
        listed = _run(installed, tmp_path, "webhooks", "list", "--json", **env)
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.strip() == '{"deliveries": []}'
    finally:
        down = _run(installed, tmp_path, "stack", "down", **env)
    assert down.returncode == 0, down.stderr
    assert "tansu" in down.stdout and "weed" in down.stdout
