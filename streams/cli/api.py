"""``darkroom api`` (the HTTP API under uvicorn) and ``darkroom apikeys create|list|revoke``."""

from __future__ import annotations

import argparse
import threading
from datetime import UTC, datetime
from typing import Any

from processors.errors import InvalidParameters
from streams.cli.common import EXIT_FAILED, existing_database, open_database, print_json
from streams.config import Settings
from streams.runtime.supervisor import stop_on_signals


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("api", help="serve the HTTP API (on DARKROOM_API_PORT or --port) until SIGTERM")
    p.add_argument("--port", type=int, help="port to listen on (default: DARKROOM_API_PORT)")
    p.add_argument("--host", help="address to listen on (default: DARKROOM_API_HOST, loopback unless set)")
    p.set_defaults(func=cmd_api)

    p = sub.add_parser("apikeys", help="the HTTP API's per-tenant keys: create (shown once), list, revoke")
    p.add_argument("action", choices=["create", "list", "revoke"])
    p.add_argument(
        "ids", nargs="*", default=[], metavar="KEY_ID", help="revoke: the keys (ids as `apikeys list` shows them)"
    )
    p.add_argument("--tenant")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_apikeys)


def cmd_api(args: argparse.Namespace, settings: Settings) -> int:
    """Serve until SIGTERM/SIGINT, then finish the requests in hand and exit 0."""
    import structlog

    from streams.api.server import server_on, start  # uvicorn and FastAPI: only for this command

    port = args.port if args.port is not None else settings.api_port
    host = args.host if args.host is not None else settings.api_host
    server, sock = server_on(settings, host, port)
    stop = threading.Event()
    with stop_on_signals(stop):
        thread = start(server, sock)
        structlog.get_logger("darkroom.api").info("HTTP API listening", host=host, port=port)
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
