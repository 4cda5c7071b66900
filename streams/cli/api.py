"""``darkroom api`` (the HTTP API under uvicorn) and ``darkroom apikeys create|list|revoke``."""

from __future__ import annotations

import argparse
import atexit
import socket
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from processors.errors import ConfigurationError, InvalidParameters
from streams.cli.common import EXIT_FAILED, existing_database, open_database, print_json
from streams.config import Settings
from streams.runtime.supervisor import stop_on_signals

if TYPE_CHECKING:
    import uvicorn


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("api", help="serve the HTTP API (on DARKROOM_API_PORT or --port) until SIGTERM")
    p.add_argument("--port", type=int, help="port to listen on (default: DARKROOM_API_PORT)")
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default: every interface)")
    p.set_defaults(func=cmd_api)

    p = sub.add_parser("apikeys", help="the HTTP API's per-tenant keys: create (shown once), list, revoke")
    p.add_argument("action", choices=["create", "list", "revoke"])
    p.add_argument("ids", nargs="*", metavar="KEY_ID", help="revoke: the keys (ids as `apikeys list` shows them)")
    p.add_argument("--tenant")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_apikeys)


def _server(settings: Settings, host: str, port: int) -> tuple[uvicorn.Server, socket.socket]:
    """The server and its socket, bound here so that a port in use is a one-line error."""
    sock = _bind(host, port)
    try:
        return _app_server(settings), sock
    except BaseException:
        sock.close()
        raise


def _app_server(settings: Settings) -> uvicorn.Server:
    import uvicorn

    from streams.api.app import create_app

    config = uvicorn.Config(create_app(settings), log_config=None, access_log=False, server_header=False)
    return uvicorn.Server(config)


def _bind(host: str, port: int) -> socket.socket:
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


def _start(server: uvicorn.Server, sock: socket.socket) -> threading.Thread:
    """Serve on a thread of its own: uvicorn installs no signal handlers there, so the
    process keeps its own (``darkroom run``'s supervisor, ``cmd_api``'s)."""
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="api", daemon=True)
    thread.start()
    return thread


def serve_in_background(settings: Settings) -> None:
    """``darkroom run``'s API: a thread of the running process, stopped (gracefully) at exit.
    The port is taken at once (in use: one error line); the app waits, as the workers do,
    for a database that does not answer yet."""
    import structlog

    from streams.errors import DependencyUnavailable
    from streams.runtime.retry import backoff_delay

    log = structlog.get_logger("darkroom.api")
    sock = _bind("0.0.0.0", settings.api_port)
    stopping = threading.Event()
    servers: list[uvicorn.Server] = []

    def serve() -> None:
        attempt = 0
        while not stopping.is_set():
            try:
                servers.append(_app_server(settings))
                break
            except DependencyUnavailable as exc:
                attempt += 1
                log.warning("HTTP API waiting for a dependency", error_code=exc.code, error=exc.message)
                stopping.wait(backoff_delay(attempt, settings.retry_backoff_s, settings.retry_max_backoff_s))
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


def cmd_api(args: argparse.Namespace, settings: Settings) -> int:
    """Serve until SIGTERM/SIGINT, then finish the requests in hand and exit 0."""
    import structlog

    port = args.port if args.port is not None else settings.api_port
    server, sock = _server(settings, args.host, port)
    stop = threading.Event()
    with stop_on_signals(stop):
        thread = _start(server, sock)
        structlog.get_logger("darkroom.api").info("HTTP API listening", host=args.host, port=port)
        while not stop.wait(0.5) and thread.is_alive():
            pass
        server.should_exit = True
        thread.join()
    return 0 if stop.is_set() else EXIT_FAILED  # the server stopped by itself: it said why in the log


def cmd_apikeys(args: argparse.Namespace, settings: Settings) -> int:
    from streams.api import keys

    if args.ids and args.action != "revoke":
        raise InvalidParameters(f"apikeys {args.action} takes no positional arguments, got {' '.join(args.ids)!r}")
    if args.action == "list":
        db = existing_database(settings)
        rows = [] if db is None else keys.list_keys(db, args.tenant)
        if args.json:
            print_json({"keys": [vars(k) | {"active": k.revoked_at is None} for k in rows]})
            return 0
        for k in rows:
            state = f"revoked {_when(k.revoked_at)}" if k.revoked_at is not None else "active"
            print(f"{k.id}  {k.tenant:<20} {k.hint:<10} created {_when(k.created_at)}  {state}")
        return 0
    if not args.tenant:
        raise InvalidParameters(f"apikeys {args.action} needs --tenant")
    db = open_database(settings)
    if args.action == "create":
        key, token = keys.create(db, args.tenant)
        if args.json:
            print_json({"id": key.id, "tenant": key.tenant, "token": token})
        else:
            print(f"key {key.id} for tenant {key.tenant}; token (shown once): {token}")
        return 0
    if not args.ids:  # revoke, the last of argparse's choices
        raise InvalidParameters("apikeys revoke needs the ids of the keys to revoke (see `darkroom apikeys list`)")
    revoked = keys.revoke(db, args.tenant, args.ids)
    missing = [k for k in args.ids if k not in revoked]
    if missing:
        raise InvalidParameters(f"no active key {', '.join(missing)} for tenant {args.tenant}")
    if args.json:
        print_json({"revoked": revoked})
    else:
        print(f"revoked {', '.join(revoked)}")
    return 0


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")
