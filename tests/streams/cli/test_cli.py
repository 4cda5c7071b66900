"""The `darkroom` command as a user runs it: exit codes, one-line errors, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from streams.config import Settings
from streams.dev.samples import photo_jpeg
from streams.runtime.supervisor import Supervisor


def darkroom(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, **(env or {})},
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: str, exit_code: int) -> None:
    assert result.returncode == exit_code, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"darkroom: error: {code}: ")


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.jpg"
    path.write_bytes(photo_jpeg(900, 600, seed=7))
    return path


def test_process_writes_the_format_named_by_the_output_extension(photo: Path, tmp_path: Path) -> None:
    out = tmp_path / "thumb.webp"
    result = darkroom("process", "thumbnail:sizes=64", str(photo), str(out), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["backend"] == "pillow"
    with Image.open(out) as img:
        assert (img.format, img.size) == ("WEBP", (64, 43))


def test_process_with_several_sizes_writes_a_directory(photo: Path, tmp_path: Path) -> None:
    out = tmp_path / "thumbs"
    assert darkroom("process", "thumbnail:sizes=32+48x48,fit=cover", str(photo), str(out)).returncode == 0
    assert sorted(p.name for p in out.iterdir()) == ["thumb-32-cover.jpg", "thumb-48-cover.jpg"]


def test_bad_input_is_one_line_and_a_non_zero_exit(tmp_path: Path, photo: Path) -> None:
    text = tmp_path / "notes.jpg"
    text.write_text("not a picture")
    assert_one_line_error(darkroom("process", "thumbnail", str(text), str(tmp_path / "o.jpg")), "not_an_image", 1)
    assert_one_line_error(darkroom("process", "sharpen", str(photo), str(tmp_path / "o.jpg")), "unknown_operation", 2)
    assert_one_line_error(
        darkroom("process", "thumbnail:sizes=0", str(photo), str(tmp_path / "o.jpg")), "invalid_parameters", 2
    )
    assert_one_line_error(
        darkroom("process", "thumbnail", str(tmp_path / "missing.jpg"), str(tmp_path / "o.jpg")),
        "invalid_parameters",
        2,
    )
    assert_one_line_error(
        darkroom("process", "thumbnail", str(photo), str(tmp_path / "o.jpg"), env={"DARKROOM_PARTITIONS": "many"}),
        "configuration_error",
        2,
    )


def test_submit_refuses_a_bad_pipeline_before_uploading(photo: Path) -> None:
    result = darkroom("submit", str(photo), "--pipeline", "thumbnail:color=red")
    assert_one_line_error(result, "invalid_parameters", 2)


@pytest.mark.integration
def test_submit_and_wait_reports_outputs_as_json(settings: Settings, photo: Path, workers: Supervisor) -> None:
    result = darkroom(
        "submit", str(photo), "--pipeline", "thumbnail:sizes=120", "--wait", "--json", env=settings.to_env()
    )
    assert result.returncode == 0, result.stderr
    (image,) = json.loads(result.stdout)["images"]
    assert image["status"] == "completed"
    assert [(o["width"], o["height"]) for o in image["outputs"]] == [(120, 80)]


def test_version_and_unexpected_arguments(tmp_path: Path) -> None:
    env = {"DARKROOM_HOME": str(tmp_path / "home")}
    shown = darkroom("--version", env=env)
    assert shown.returncode == 0 and shown.stdout.strip().startswith("darkroom ")
    assert_one_line_error(darkroom("webhooks", "list", "extra", env=env), "invalid_parameters", 2)


@pytest.mark.parametrize(
    "args",
    [
        ["status", "img-1"],
        ["status", "img-1", "--json"],
        ["webhooks", "list"],
        ["webhooks", "list", "--json"],
    ],
)
def test_read_only_commands_create_nothing(tmp_path: Path, args: list[str]) -> None:
    home = tmp_path / "home"
    result = darkroom(*args, env={"DARKROOM_HOME": str(home), "DARKROOM_DATABASE_URL": ""})
    assert result.returncode in (0, 1), result.stderr
    assert "Traceback" not in result.stderr
    assert not home.exists()


def test_migrate_creates_the_result_database_once(tmp_path: Path) -> None:
    """What the Kubernetes migration Job runs: it applies every migration, then has nothing to do."""
    env = {"DARKROOM_HOME": str(tmp_path / "home"), "DARKROOM_DATABASE_URL": f"sqlite:///{tmp_path / 'r.sqlite3'}"}
    first = darkroom("migrate", env=env)
    assert first.returncode == 0 and first.stdout.startswith("applied migrations 1, 2"), first.stderr
    again = darkroom("migrate", env=env)
    assert again.returncode == 0 and again.stdout.strip() == "the result database is up to date"
    assert_one_line_error(darkroom("run", "--processes", "thumbnail=x", env=env), "configuration_error", 2)
