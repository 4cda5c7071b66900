"""``darkroom`` command line. Every failure is one line on stderr and a non-zero exit."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from processors import AVAILABLE_OPERATIONS, KNOWN_OPERATIONS, get_operation
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
    from streams.steps import worker_specs
    from streams.supervisor import Supervisor
    from streams.topics import ensure_topics

    ensure_topics(settings)
    Supervisor(settings, worker_specs(settings, names)).run_until_signalled()
    return 0


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    return _run_workers(settings, ["ingest", *AVAILABLE_OPERATIONS])


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
    finals = client.wait(subs, timeout_s=args.timeout)
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
    op = get_operation(step["operation"])
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

    p = sub.add_parser("run", help="run every worker (ingest + available operations) until SIGTERM")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("worker", help="run one consumer group until SIGTERM")
    p.add_argument("operation", choices=["ingest", *KNOWN_OPERATIONS])
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
