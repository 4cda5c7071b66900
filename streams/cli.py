"""``darkroom`` command line. Every failure is one line on stderr and a non-zero exit."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from processors import KNOWN_OPERATIONS
from processors.errors import ConfigurationError, DarkroomError, InvalidParameters, InvalidPipeline
from streams import pipeline as pipelines
from streams.config import Settings, load_settings
from streams.logs import configure_logging

EXIT_FAILED = 1
EXIT_USAGE = 2


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=None, default=str, sort_keys=True))


# -- stack ---------------------------------------------------------------------
def cmd_stack(args: argparse.Namespace, settings: Settings) -> int:
    from streams.stack import Stack

    stack = Stack(settings)
    if args.action == "up":
        started = time.perf_counter()
        stack.up()
        from streams.topics import ensure_topics

        ensure_topics(settings)
        status = stack.status()
        elapsed = time.perf_counter() - started
    elif args.action == "down":
        stopped = stack.down()
        if args.json:
            _print_json({"stopped": stopped})
        else:
            print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
        return 0
    else:
        status = stack.status()
        elapsed = 0.0
    rows = [{"service": s.name, "pid": s.pid, "running": s.running, "address": s.address} for s in status]
    if args.json:
        _print_json({"home": str(settings.home), "services": rows})
    else:
        if not rows:
            print("nothing embedded: Kafka and S3 are configured externally")
        for r in rows:
            state = f"running (pid {r['pid']})" if r["running"] else "stopped"
            print(f"{r['service']:<6} {r['address']:<22} {state}")
        if args.action == "up":
            print(f"ready in {elapsed:.1f}s; data in {settings.home}")
    return 0 if args.action != "status" or all(r["running"] for r in rows) else EXIT_FAILED


# -- workers -------------------------------------------------------------------
def _run_workers(settings: Settings, names: Sequence[str]) -> int:
    from streams.services import build_supervisor
    from streams.topics import ensure_topics

    ensure_topics(settings)
    build_supervisor(settings, names).run_until_signalled()
    return 0


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from streams.services import ALL

    return _run_workers(settings, ALL)


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    return _run_workers(settings, [args.operation])


# -- submit / process -------------------------------------------------------------
def cmd_submit(args: argparse.Namespace, settings: Settings) -> int:
    from streams.client import Client, summarize

    paths = [Path(p) for p in args.files]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise InvalidParameters(f"no such file: {', '.join(missing)}")
    steps = pipelines.parse_spec(args.pipeline)
    pipelines.validate(steps)  # before touching storage: a typo is the user's error, not an outage
    client = Client(settings)
    subs = [client.submit_file(p, steps, callback_url=args.callback, tenant=args.tenant) for p in paths]
    if not args.wait:
        rows: list[dict[str, Any]] = [{"image_id": s.image_id, "event_id": s.event_id, "key": s.key} for s in subs]
        if args.json:
            _print_json({"submitted": rows})
        else:
            for r in rows:
                print(f"submitted {r['image_id']} (event {r['event_id']}) s3://{settings.bucket}/{r['key']}")
        return 0
    from streams.progress import wait_with_progress

    labels = {s.image_id: p.name for s, p in zip(subs, paths, strict=True)}
    finals = wait_with_progress(client, subs, labels, timeout_s=args.timeout, show=sys.stderr.isatty())
    rows = [summarize(s, finals.get(s.image_id)) for s in subs]
    if args.json:
        _print_json({"images": rows})
    else:
        for r in rows:
            _print_row_text(r)
    return 0 if all(r["status"] == "completed" for r in rows) else EXIT_FAILED


def _print_row_text(row: dict[str, Any]) -> None:
    print(f"{row['image_id']}: {row['status']}")
    for o in row.get("outputs", []):
        print(f"  {o['name']:<18} {o['width']}x{o['height']:<6} {o['size']:>9,} B  {o['key']}")
    if "error" in row:
        print(f"  {row['error']['error_code']}: {row['error']['message']}")


def cmd_process(args: argparse.Namespace, settings: Settings) -> int:
    steps = pipelines.parse_spec(args.spec)
    if len(steps) != 1:
        raise InvalidParameters("`process` runs exactly one operation; use `submit` for pipelines")
    step = steps[0]
    from streams.steps import operation_for

    op = operation_for(settings, step["operation"])
    output = Path(args.output)
    fmt = output.suffix.lstrip(".").lower()
    if "format" not in step["params"] and fmt in {"jpg", "jpeg", "png", "webp", "avif"}:
        try:
            op.parse_params({**step["params"], "format": fmt})
            step["params"]["format"] = fmt
        except InvalidParameters:
            pass  # the operation has no format parameter
    params = op.parse_params(step["params"])
    source = Path(args.input)
    if not source.is_file():
        raise InvalidParameters(f"no such file: {source}")
    if source.stat().st_size > settings.max_file_bytes:
        from processors.errors import FileTooLarge

        raise FileTooLarge(f"{source} is over the {settings.max_file_bytes}-byte limit")
    started = time.perf_counter()
    result = op.run(source.read_bytes(), params, settings.limits)
    renditions = result.renditions
    elapsed_ms = (time.perf_counter() - started) * 1000
    written = []
    if len(renditions) == 1:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(renditions[0].data)
        written.append((output, renditions[0]))
    else:
        output.mkdir(parents=True, exist_ok=True)
        for r in renditions:
            path = output / f"{r.name}.{r.extension}"
            path.write_bytes(r.data)
            written.append((path, r))
    rows = [
        {"path": str(p), "width": r.width, "height": r.height, "size": len(r.data), "content_type": r.content_type}
        for p, r in written
    ]
    if args.json:
        _print_json(
            {
                "operation": op.name,
                "backend": result.backend,
                "details": dict(result.details),
                "outputs": rows,
                "ms": round(elapsed_ms, 1),
            }
        )
    else:
        for row in rows:
            print(f"{row['path']}: {row['width']}x{row['height']} {row['size']:,} B")
        details = ", ".join(f"{k}={v}" for k, v in result.details.items())
        print(f"{op.name} ({result.backend}) took {elapsed_ms:.0f} ms{'; ' + details if details else ''}")
    return 0


# -- results and webhooks ----------------------------------------------------------
def _database(settings: Settings) -> Any:
    from streams.database import Database

    db = Database(settings)
    db.migrate()
    return db


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from streams.dispatcher import deliveries
    from streams.results import get_result
    from streams.storage import ObjectStore

    db = _database(settings)
    row = get_result(db, args.image_id)
    if row is None:
        if args.json:
            _print_json({"image_id": args.image_id, "status": "unknown"})
        else:
            print(f"{args.image_id}: no final result recorded (still processing, or never submitted)")
        return EXIT_FAILED
    store = ObjectStore(settings)
    for output in row["outputs"]:
        output["url"] = store.presigned_get(output["bucket"], output["key"])
    row["webhooks"] = deliveries(db, image_id=args.image_id)
    if args.json:
        _print_json(row)
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


def cmd_webhooks(args: argparse.Namespace, settings: Settings) -> int:
    from streams import dispatcher

    db = _database(settings)
    if args.action == "subscribe":
        if not args.tenant or not args.url:
            raise InvalidParameters("webhooks subscribe needs --tenant and --url")
        events = [f"image.{e.strip()}" for e in args.events.split(",")]
        if any(e not in {"image.completed", "image.failed"} for e in events):
            raise InvalidParameters("--events takes completed and/or failed")
        sub_id, secret = dispatcher.subscribe(db, args.tenant, args.url, events)
        if args.json:
            _print_json({"id": sub_id, "secret": secret})
        else:
            print(f"subscription {sub_id}; signing secret (shown once): {secret}")
        return 0
    if args.action == "redeliver":
        count = dispatcher.redeliver(db, args.ids or None)
        print(json.dumps({"redelivered": count}) if args.json else f"{count} exhausted deliveries queued again")
        return 0
    rows = dispatcher.deliveries(db, status=args.status)
    if args.json:
        _print_json({"deliveries": rows})
    else:
        for w in rows:
            print(
                f"{w['webhook_id']} {w['target']:<22} {w['status']:<9} attempts={w['attempts']}"
                f" last={w['last_status_code'] or w['last_error'] or '-'} {w['url']}"
            )
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from streams.demo import run_demo

    return run_demo(settings, as_json=args.json, keep_stack=args.keep_stack, timeout_s=args.timeout)


# -- parser --------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="darkroom", description="Event-driven image pipeline on Kafka.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("stack", help="start/stop/inspect the embedded Kafka + S3 stack")
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_stack)

    p = sub.add_parser("demo", help="run the pipeline on sample images on the embedded stack")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--keep-stack", action="store_true", help="leave the embedded stack running")
    p.add_argument("--timeout", type=float, default=180.0)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("run", help="run everything (ingest, operations, result writer, webhooks) until SIGTERM")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("worker", help="run one service (ingest, an operation, results, webhooks) until SIGTERM")
    p.add_argument("operation", choices=["ingest", *KNOWN_OPERATIONS, "results", "webhooks"])
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("submit", help="upload files and emit their upload events")
    p.add_argument("files", nargs="+")
    p.add_argument("--pipeline", required=True, help="e.g. 'thumbnail:sizes=256+1024,format=webp' or a preset")
    p.add_argument("--callback", help="webhook URL for this upload")
    p.add_argument("--tenant")
    p.add_argument("--wait", action="store_true", help="follow each image to its final event")
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("process", help="run one operation on a local file (no Kafka, no S3)")
    p.add_argument("spec", help="e.g. 'thumbnail:sizes=256,format=webp'")
    p.add_argument("input")
    p.add_argument("output", help="file, or directory when the operation makes several outputs")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_process)
    from streams.models import add_models_parser

    add_models_parser(sub)

    p = sub.add_parser("status", help="an image's stored final state, outputs (with download URLs) and webhooks")
    p.add_argument("image_id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("webhooks", help="tenant subscriptions and delivery records")
    p.add_argument("action", choices=["list", "subscribe", "redeliver"])
    p.add_argument("ids", nargs="*", help="redeliver: webhook ids (default: every exhausted delivery)")
    p.add_argument("--tenant")
    p.add_argument("--url")
    p.add_argument("--events", default="completed,failed")
    p.add_argument("--status", choices=["pending", "delivered", "exhausted", "disabled"])
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_webhooks)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        configure_logging(settings)
        code: int = args.func(args, settings)
        return code
    except DarkroomError as exc:
        print(f"darkroom: error: {exc.code}: {exc.message}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, InvalidPipeline | ConfigurationError) else EXIT_FAILED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
