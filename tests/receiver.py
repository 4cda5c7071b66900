"""A webhook receiver on loopback for tests: records every request and answers as told."""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = tuple[int, dict[str, str], float]
"""(status, headers, seconds to wait before answering)."""


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    """Lower-cased names."""
    body: bytes
    at: float
    """``time.monotonic()`` on arrival."""
    n: int
    """1 for the first request this receiver got, 2 for the next…"""
    attempt: int
    """1 for the first request with this path and ``webhook-id``, 2 for the next…"""


def ok(request: Request) -> Answer:
    return 204, {}, 0.0


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up makes the reply fail: expected, not news."""


class Receiver:
    """Records each request, and the most that were in flight at once."""

    def __init__(self, answer: Callable[[Request], Answer] = ok) -> None:
        self.requests: list[Request] = []
        self.peak = 0
        self._in_flight = 0
        self._attempts: dict[tuple[str, str], int] = defaultdict(int)
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver._lock:
                    key = (self.path, headers.get("webhook-id", ""))
                    receiver._attempts[key] += 1
                    request = Request(
                        self.path, headers, body, time.monotonic(), len(receiver.requests) + 1, receiver._attempts[key]
                    )
                    receiver.requests.append(request)
                    receiver._in_flight += 1
                    receiver.peak = max(receiver.peak, receiver._in_flight)
                status, answer_headers, delay = answer(request)
                time.sleep(delay)
                with receiver._lock:
                    receiver._in_flight -= 1
                self.send_response(status)
                for name, value in answer_headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def counts(self) -> Counter[str]:
        """Requests per ``webhook-id``."""
        with self._lock:
            return Counter(r.headers["webhook-id"] for r in self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
