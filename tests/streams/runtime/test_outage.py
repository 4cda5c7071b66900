"""The pause bookkeeping: backoff, metrics, health and the lines an operator reads (pure)."""

from __future__ import annotations

import pytest
import structlog.testing

from streams.config import Settings
from streams.errors import AccessRefused, StorageUnavailable
from streams.observe import metrics
from streams.observe.health import LoopState
from streams.runtime import outage as outage_module
from streams.runtime.outage import Outage


def test_a_pause_is_said_on_every_try_and_when_it_ends() -> None:
    pause = Outage("probe-a", Settings(retry_backoff_s=1.0, retry_max_backoff_s=4.0), structlog.get_logger("t"))
    pause.health = LoopState("probe-a")
    exc = StorageUnavailable("object storage unreachable for s3://b/k: NewConnectionError")
    with structlog.testing.capture_logs() as logs:
        delays = [pause.begins(exc) for _ in range(4)]
        assert pause.health.paused == f"storage_unavailable: {exc.message}"
        assert metrics.PAUSED.labels("probe-a", "storage")._value.get() == 1
        pause.over()
    assert 0.5 <= delays[0] <= 1.0 and all(2.0 <= d <= 4.0 for d in delays[2:])  # doubling, capped, jittered
    tries = [e for e in logs if e["event"] == "dependency unavailable; paused, will retry"]
    assert [e["waits"] for e in tries] == [1, 2, 3, 4] and {e["log_level"] for e in tries} == {"warning"}
    assert {e["error_code"] for e in tries} == {"storage_unavailable"} and all("paused_s" in e for e in tries)
    assert [e["event"] for e in logs][-1] == "resumed after an outage"
    assert pause.health.paused is None and pause.waits == 0
    assert metrics.PAUSED.labels("probe-a", "storage")._value.get() == 0


def test_a_long_wait_says_at_least_once_a_minute_what_it_waits_for(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(outage_module.time, "monotonic", lambda: clock[0])
    pause = Outage("probe-b", Settings(retry_backoff_s=300.0, retry_max_backoff_s=300.0), structlog.get_logger("t"))
    with structlog.testing.capture_logs() as logs:
        pause.begins(AccessRefused("object storage refused access to s3://b: AccessDenied"))
        for _ in range(5 * 60):  # five minutes of a single wait, looked at every second
            clock[0] += 1.0
            pause.waiting(300.0 - (clock[0] - 1000.0))
    still = [e for e in logs if e["event"] == "still paused"]
    assert len(still) == 5 and {e["log_level"] for e in still} == {"error"}  # refused credentials: error
    assert [e["paused_s"] for e in still] == [60, 120, 180, 240, 300]


def test_stopping_while_paused_clears_it_without_saying_it_resumed() -> None:
    pause = Outage("probe-c", Settings(), structlog.get_logger("t"))
    with structlog.testing.capture_logs() as logs:
        pause.begins(StorageUnavailable("down"))
        pause.over(stopping=True)
    assert [e["event"] for e in logs] == ["dependency unavailable; paused, will retry"]
