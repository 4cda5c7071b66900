"""A real HTTP(S) receiver on loopback for the webhook tests, and one attempt sent to it.

Deliveries are verified by an independent verifier, svix 1.83.0's ``svix.webhooks.Webhook``:
its own HMAC code, not the ``standardwebhooks`` package that signs (later svix releases
delegate to it).
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx2

from streams.config import parse_networks
from streams.runtime.egress import EgressGuard
from streams.sinks.webhooks.attempt import send
from streams.sinks.webhooks.signing import WebhookSecret, new_secret

LOOPBACK = EgressGuard(allow_networks=parse_networks("127.0.0.1/32,::1/128"))
SECRET = new_secret()
OLD_SECRET = new_secret()
PAYLOAD = b'{"data":{"image_id":"img-1"},"timestamp":"2026-01-01T00:00:00.000Z","type":"image.completed"}'


@dataclass(frozen=True)
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (timeout tests) makes the reply fail: expected, not news."""


class Receiver:
    """An HTTP server on 127.0.0.1 answering from a script: (status, headers, delay) per request."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.script: deque[tuple[int, dict[str, str], float]] = deque()
        self.seen: list[Seen] = []
        self._stop = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                receiver.seen.append(Seen(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                status, headers, delay = receiver.script.popleft() if receiver.script else (204, {}, 0.0)
                if delay:
                    receiver._stop.wait(delay)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def url(self, path: str = "/hook", host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def close(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


def deliver(client: httpx2.Client, url: str, *, secrets: Sequence[WebhookSecret | str] = (SECRET,), **kw: Any) -> Any:
    webhook_id = kw.pop("webhook_id", "evt-1")
    options: dict[str, Any] = {"timeout_s": 5.0, "guard": LOOPBACK, "client": client, **kw}
    return send(url, webhook_id, PAYLOAD, secrets, **options)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
