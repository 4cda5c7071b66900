"""Starting the services waits out an unreachable broker instead of exiting."""

from __future__ import annotations

import socket
import threading

import structlog.testing

from streams.config import Settings
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
