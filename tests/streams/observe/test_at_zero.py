"""Series created at zero when a process starts (issue 23): without them ``increase()``
misses the first event of every fresh pod, since a series' first sample is no increase."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

import streams.errors
from processors import Limits, get_operation
from streams.dev.samples import photo_jpeg
from streams.observe import metrics


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def has(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> bool:
    """Whether the series exists. Its value may be above 0 here: other tests in this
    process count into the same registry (a fresh process is checked at zero below)."""
    return (name, frozenset(labels.items())) in found


def test_the_error_codes_are_the_whole_tree() -> None:
    codes = metrics.error_codes()
    assert {"undecodable_event", "not_an_image", "storage_unavailable", "internal_error"} <= set(codes)
    assert streams.errors.OutputRejected.code in codes
    assert metrics.dependencies() == ("broker", "database", "registry", "storage")


def test_steps_report_a_backend_their_series_were_created_for() -> None:
    image = photo_jpeg(64, 48, seed=1)
    for name in ("thumbnail", "enhance"):
        op = get_operation(name)
        result = op.run(image, op.parse_params({}), Limits())
        assert result.backend in metrics.backends(name), name
    from processors.upscale.engine import BACKENDS

    assert metrics.backends("upscale") == tuple(BACKENDS)


def test_services_and_workers_start_with_every_known_series_at_zero() -> None:
    metrics.services_at_zero(["ingest", "thumbnail", "webhooks"])
    metrics.worker_at_zero("thumbnail", "darkroom.thumbnail", ["images.step.thumbnail"])
    found = samples(generate_latest().decode())
    for code in metrics.error_codes():
        assert has(found, "darkroom_failures_total", step="thumbnail", code=code), code
        assert has(found, "darkroom_failures_total", step="ingest", code=code), code
        assert has(found, "darkroom_dead_letters_total", group="darkroom.thumbnail", code=code), code
    assert not any(n == "darkroom_failures_total" and ("step", "webhooks") in ls for n, ls in found)
    for outcome in metrics.WEBHOOK_OUTCOMES:
        assert has(found, "darkroom_webhook_attempts_total", outcome=outcome)
    for name in ("ingest", "thumbnail", "webhooks"):
        assert has(found, "darkroom_service_restarts_total", service=name)
        assert has(found, "darkroom_worker_stalls_total", worker=name)
        for dependency in metrics.dependencies():
            assert has(found, "darkroom_worker_paused", worker=name, dependency=dependency)
            assert has(found, "darkroom_pauses_total", worker=name, dependency=dependency)
    for dependency in metrics.dependencies():
        assert has(found, "darkroom_retries_total", dependency=dependency)
    assert has(found, "darkroom_step_duration_seconds_count", operation="thumbnail", backend="pillow")
    assert has(found, "darkroom_step_duration_seconds_bucket", operation="thumbnail", backend="pillow", le="0.05")
    assert has(found, "darkroom_records_consumed_total", group="darkroom.thumbnail", topic="images.step.thumbnail")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_a_worker_process_serves_its_series_at_zero_before_it_reaches_the_broker(tmp_path: Path) -> None:
    """`darkroom worker thumbnail` with no broker to reach: it waits for one, and its
    endpoint already serves the failures, step times and restarts it will count."""
    port, broker = free_port(), free_port()  # nothing listens on `broker`
    env = {k: v for k, v in os.environ.items() if not k.startswith("DARKROOM_") and k != metrics.MULTIPROC_ENV} | {
        "DARKROOM_HOME": str(tmp_path),
        "DARKROOM_KAFKA_BOOTSTRAP": f"127.0.0.1:{broker}",
        "DARKROOM_S3_ENDPOINT": f"127.0.0.1:{free_port()}",
        "DARKROOM_S3_ACCESS_KEY": "x",
        "DARKROOM_S3_SECRET_KEY": "x" * 8,
        "DARKROOM_METRICS_PORT": str(port),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "worker", "thumbnail"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline, text = time.monotonic() + 30, ""
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
                    text = resp.read().decode()
                break
            except OSError:
                time.sleep(0.2)
        assert text, "no endpoint"
        found = samples(text)
        assert has(found, "darkroom_failures_total", step="thumbnail", code="not_an_image")
        assert has(found, "darkroom_step_duration_seconds_count", operation="thumbnail", backend="pillow")
        assert has(found, "darkroom_service_restarts_total", service="thumbnail")
        assert has(found, "darkroom_retries_total", dependency="broker")
        counted = ("darkroom_failures_total", "darkroom_service_restarts_total", "darkroom_dead_letters_total")
        assert {v for (name, _), v in found.items() if name in counted} == {0.0}  # a fresh process: all at zero
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
