"""``darkroom webhooks list|subscribe|redeliver``: tenant subscriptions and delivery records."""

from __future__ import annotations

import argparse
import json
from typing import Any

from processors.errors import InvalidParameters
from streams.cli.common import existing_database, open_database, print_json, shown
from streams.config import Settings
from streams.runtime.egress import EgressGuard
from streams.wire.events import check_tenant


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("webhooks", help="tenant subscriptions and delivery records")
    p.add_argument("action", choices=["list", "subscribe", "redeliver"])
    p.add_argument("ids", nargs="*", help="redeliver: webhook ids (default: every exhausted delivery)")
    p.add_argument("--tenant")
    p.add_argument("--url")
    p.add_argument("--events", default="completed,failed")
    p.add_argument("--status", choices=["pending", "delivered", "exhausted", "disabled"])
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_webhooks)


def cmd_webhooks(args: argparse.Namespace, settings: Settings) -> int:
    from streams.sinks.outbox import Outbox

    if args.ids and args.action != "redeliver":
        raise InvalidParameters(f"webhooks {args.action} takes no positional arguments, got {' '.join(args.ids)!r}")
    if args.action == "list":
        db = existing_database(settings)
        rows = [] if db is None else shown(Outbox(db).deliveries(status=args.status))
        if args.json:
            print_json({"deliveries": rows})
            return 0
        for w in rows:
            print(
                f"{w['webhook_id']} {w['target']:<22} {w['status']:<9} attempts={w['attempts']}"
                f" last={w['last_status_code'] or w['last_error'] or '-'} {w['url']}"
            )
        return 0
    db = open_database(settings)
    if args.action == "subscribe":
        if not args.tenant or not args.url:
            raise InvalidParameters("webhooks subscribe needs --tenant and --url")
        check_tenant(args.tenant)
        events = [f"image.{e.strip()}" for e in args.events.split(",")]
        if any(e not in {"image.completed", "image.failed"} for e in events):
            raise InvalidParameters("--events takes completed and/or failed")
        EgressGuard.from_settings(settings).admit(args.url)  # refused here, before a secret is issued
        sub_id, secret = Outbox(db).subscribe(args.tenant, args.url, events)
        if args.json:
            print_json({"id": sub_id, "secret": secret})
        else:
            print(f"subscription {sub_id}; signing secret (shown once): {secret}")
        return 0
    count = Outbox(db).redeliver(args.ids or None)  # redeliver, the last of argparse's choices
    print(json.dumps({"redelivered": count}) if args.json else f"{count} exhausted deliveries queued again")
    return 0
