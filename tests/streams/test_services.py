"""Starting the services waits out an unreachable broker instead of exiting."""

from __future__ import annotations

import socket
import threading

import pytest
import structlog.testing

from processors.errors import ConfigurationError
from streams import services
from streams.config import Settings, load_settings, parse_process_counts
from streams.services import start_when_ready


def test_starting_while_the_broker_is_unreachable_waits_instead_of_failing() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    settings = Settings(kafka_bootstrap=f"127.0.0.1:{closed}", retry_backoff_s=0.1, retry_max_backoff_s=0.2)
    stop = threading.Event()
    timer = threading.Timer(12.0, stop.set)
    timer.start()
    with structlog.testing.capture_logs() as logs:
        assert start_when_ready(settings, ["ingest"], stop) is None
    timer.cancel()
    waits = [e for e in logs if e["event"] == "dependency unavailable at start; waiting"]
    assert waits and {e["error_code"] for e in waits} == {"broker_unavailable"}


def test_process_counts_default_from_the_cpus_and_take_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services, "cpus", lambda: 16)
    counts = services.process_counts(parse_process_counts("thumbnail=4,webhooks=0"), services.NAMES)
    assert counts == {
        "ingest": 1,
        "cutout": 1,
        "enhance": 8,
        "upscale": 1,
        "thumbnail": 4,
        "results": 1,
        "webhooks": 0,
        "notifications": 1,
    }
    monkeypatch.setattr(services, "cpus", lambda: 2)
    assert services.process_counts({}, services.NAMES)["thumbnail"] == 1  # two cores: threads in one process
    for bad in ("thumbnail", "thumbnail=-1", "sharpen=2", "thumbnail=two"):
        with pytest.raises(ConfigurationError, match="DARKROOM_PROCESSES"):
            load_settings({"DARKROOM_PROCESSES": bad})
    with pytest.raises(ConfigurationError, match="notifications not among"):
        services.process_counts({"notifications": 1}, services.ALL)


def test_upscale_processes_split_the_cpus_and_static_members_get_ids_of_their_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(services, "cpus", lambda: 8)
    kids = services.children(Settings(instance_id="pod-a"), {"upscale": 2, "thumbnail": 1})
    assert [(c.name, c.argv) for c in kids] == [("upscale", ("worker", "upscale"))] * 2 + [
        ("thumbnail", ("worker", "thumbnail"))
    ]
    assert [c.env.get("OMP_NUM_THREADS") for c in kids] == ["4", "4", None]
    assert [c.env["DARKROOM_INSTANCE_ID"] for c in kids] == ["pod-a.0", "pod-a.1", "pod-a.0"]
    assert {c.env["DARKROOM_METRICS_PORT"] for c in kids} == {"0"}  # the supervisor serves them all
