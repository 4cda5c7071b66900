"""The HTTP API under uvicorn: its socket, its server, and the thread it serves on.

``darkroom api`` serves in the foreground (``streams.cli.api``); ``darkroom run`` serves
on a thread of the running process (``serve_in_background``), waiting for a database that
does not answer yet as the workers do. The socket is bound first, so a port in use is one
error line instead of a server that never answers.
"""

from __future__ import annotations

import atexit
import socket
import threading

import structlog
import uvicorn

from processors.errors import ConfigurationError
from streams.config import Settings
from streams.errors import DependencyUnavailable
from streams.runtime.retry import Backoff


def server_on(settings: Settings, host: str, port: int) -> tuple[uvicorn.Server, socket.socket]:
    """The server and its socket, bound here so that a port in use is a one-line error."""
    sock = bind(host, port)
    try:
        return app_server(settings), sock
    except BaseException:
        sock.close()
        raise


def app_server(settings: Settings) -> uvicorn.Server:
    from streams.api.app import create_app

    config = uvicorn.Config(create_app(settings), log_config=None, access_log=False, server_header=False)
    return uvicorn.Server(config)


def bind(host: str, port: int) -> socket.socket:
    if not 0 < port < 65536:
        raise ConfigurationError("the HTTP API needs a port: set DARKROOM_API_PORT or pass --port")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not 0: asyncio sets TCP_NODELAY only on sockets that say so, and
    # without it every answer waits out the client's delayed ACK (40 ms)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigurationError(f"the HTTP API cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


def start(server: uvicorn.Server, sock: socket.socket) -> threading.Thread:
    """Serve on a thread of its own: uvicorn installs no signal handlers there, so the
    process keeps its own (``darkroom run``'s supervisor, ``cmd_api``'s)."""
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="api", daemon=True)
    thread.start()
    return thread


def serve_in_background(settings: Settings) -> None:
    """``darkroom run``'s API: a thread of the running process, stopped (gracefully) at exit.
    The port is taken at once (in use: one error line); the app waits, as the workers do,
    for a database that does not answer yet."""
    log = structlog.get_logger("darkroom.api")
    sock = bind(settings.api_host, settings.api_port)
    stopping = threading.Event()
    servers: list[uvicorn.Server] = []

    def serve() -> None:
        backoff = Backoff(settings.retry_backoff_s, settings.retry_max_backoff_s)
        while not stopping.is_set():
            try:
                servers.append(app_server(settings))
                break
            except DependencyUnavailable as exc:
                log.warning("HTTP API waiting for a dependency", error_code=exc.code, error=exc.message)
                stopping.wait(backoff.next())
        else:
            return
        log.info("HTTP API listening", port=settings.api_port)
        servers[0].run(sockets=[sock])

    thread = threading.Thread(target=serve, name="api", daemon=True)

    def stop() -> None:  # finish the requests in hand
        stopping.set()
        for server in servers:
            server.should_exit = True
        thread.join(10)

    atexit.register(stop)
    thread.start()
