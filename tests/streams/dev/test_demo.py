"""``darkroom demo``, the main job the README opens with, as a user runs it (a subprocess,
a fresh data home, its own embedded stack on free ports), ending with the stack down."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streams.dev.stack import free_port_block

pytestmark = pytest.mark.integration


def test_the_demo_completes_every_sample_and_leaves_nothing_running(tmp_path: Path) -> None:
    kafka, s3, master, volume, filer, admin = free_port_block(6)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DARKROOM_")},
        "DARKROOM_HOME": str(tmp_path / "home"),
        **{
            f"DARKROOM_{name}_PORT": str(port)
            for name, port in (
                ("KAFKA", kafka),
                ("S3", s3),
                ("WEED_MASTER", master),
                ("WEED_VOLUME", volume),
                ("WEED_FILER", filer),
                ("WEED_ADMIN", admin),
            )
        },
    }
    result = subprocess.run(
        [sys.executable, "-m", "streams.cli", "demo", "--json"], capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["ok"] and len(report["images"]) == 6
    assert {image["status"] for image in report["images"]} == {"completed"}
    kept_alpha = [o for image in report["images"] for o in image["outputs"] if o["alpha"]]
    assert kept_alpha and all(o["content_type"] in {"image/png", "image/webp"} for o in kept_alpha)
    assert Path(report["worker_log"]).stat().st_size > 0
    status = subprocess.run(
        [sys.executable, "-m", "streams.cli", "stack", "status", "--json"], capture_output=True, text=True, env=env
    )
    assert not any(s["running"] for s in json.loads(status.stdout)["services"]), status.stdout  # exit 1: none runs
