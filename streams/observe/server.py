"""The endpoint on ``DARKROOM_METRICS_PORT``: ``/metrics``, ``/healthz``, ``/readyz``.

prometheus-client's WSGI app serves the metrics; the two probes answer 200 or 503 with
a JSON body naming each loop and what is wrong with it, so ``curl`` tells an operator
why a pod is not ready. It runs on a daemon thread of the process it reports on (or of
the supervisor, for several processes).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from processors.errors import ConfigurationError
from streams.observe import metrics
from streams.observe.health import HEALTH, verdict

Loops = Callable[[], list[dict[str, Any]]]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # probes every few seconds: not worth a log line
        pass


def app(loops: Loops) -> Callable[..., Iterable[bytes]]:
    """The WSGI app; ``loops`` gives the loops to judge (this process's, or its children's too)."""
    exporter = make_wsgi_app(metrics.registry())

    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path not in ("/healthz", "/readyz"):
            return exporter(environ, start_response)
        found = loops()
        healthy, ready = verdict(found)
        ok = healthy if path == "/healthz" else ready
        body = json.dumps({"healthy": healthy, "ready": ready, "loops": found}).encode()
        start_response(
            "200 OK" if ok else "503 Service Unavailable",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]

    return serve


def start(port: int, stuck_after_s: float, loops: Loops | None = None, host: str = "127.0.0.1") -> WSGIServer:
    """Serve on ``port`` (0: any free port, see ``server_port``) until the process ends."""
    try:
        server = make_server(
            host,
            port,
            app(loops or (lambda: HEALTH.snapshot(stuck_after_s))),
            server_class=_Server,
            handler_class=_Quiet,
        )
    except OSError as exc:  # in use, or not ours to take: the operator's to fix, in one line
        raise ConfigurationError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None
    threading.Thread(target=server.serve_forever, name="metrics-endpoint", daemon=True).start()
    return server
