"""``darkroom status IMAGE_ID``: an image's stored final state, outputs with download URLs, webhooks."""

from __future__ import annotations

import argparse
from typing import Any

from streams.cli.common import EXIT_FAILED, existing_database, print_json, shown
from streams.config import Settings


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("status", help="an image's stored final state, outputs (with download URLs) and webhooks")
    p.add_argument("image_id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from streams.runtime.storage import ObjectStore
    from streams.sinks.outbox import Outbox
    from streams.sinks.results import get_result

    db = existing_database(settings)
    row = None if db is None else get_result(db, args.image_id)
    if db is None or row is None:
        if args.json:
            print_json({"image_id": args.image_id, "status": "unknown"})
        else:
            print(f"{args.image_id}: no final result recorded (still processing, or never submitted)")
        return EXIT_FAILED
    store = ObjectStore(settings)
    for output in row["outputs"]:
        output["url"] = store.presigned_get(output["bucket"], output["key"])
    row["webhooks"] = shown(Outbox(db).deliveries(image_id=args.image_id))
    if args.json:
        print_json(row)
        return 0
    print(f"{row['image_id']}: {row['status']} (upload event {row['upload_event_id']})")
    if row["error_code"]:
        print(f"  {row['error_code']}: {row['message']} (step {row['failed_step']}, retryable: {row['retryable']})")
    for o in row["outputs"]:
        print(f"  {o['name']:<18} {o['width']}x{o['height']:<6} {o['size']:>9,} B  {o['url']}")
    for t in row["timings"]:
        print(
            f"  step {t['operation']} ({t['backend']}): {t['duration_ms']:.0f} ms{' (reused)' if t['reused'] else ''}"
        )
    for w in row["webhooks"]:
        print(f"  webhook {w['webhook_id']} → {w['url']}: {w['status']} after {w['attempts']} attempt(s)")
    return 0
