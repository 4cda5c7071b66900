"""``darkroom stack up|down|status`` and ``darkroom demo``: the embedded stack and the main job on it."""

from __future__ import annotations

import argparse
import time
from typing import Any

from streams.cli.common import EXIT_FAILED, print_json
from streams.config import Settings


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("stack", help="start/stop/inspect the embedded Kafka + S3 stack")
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_stack)

    p = sub.add_parser("demo", help="run the pipeline on sample images on the embedded stack")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--keep-stack", action="store_true", help="leave the embedded stack running")
    p.add_argument("--timeout", type=float, default=180.0)
    p.set_defaults(func=cmd_demo)


def cmd_stack(args: argparse.Namespace, settings: Settings) -> int:
    from streams.dev.stack import Stack

    stack = Stack(settings)
    if args.action == "up":
        started = time.perf_counter()
        stack.up()
        from streams.runtime.topics import ensure_topics

        ensure_topics(settings)
        status = stack.status()
        elapsed = time.perf_counter() - started
    elif args.action == "down":
        stopped = stack.down()
        if args.json:
            print_json({"stopped": stopped})
        else:
            print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
        return 0
    else:
        status = stack.status()
        elapsed = 0.0
    rows = [{"service": s.name, "pid": s.pid, "running": s.running, "address": s.address} for s in status]
    if args.json:
        print_json({"home": str(settings.home), "services": rows})
    else:
        if not rows:
            print("nothing embedded: Kafka and S3 are configured externally")
        for r in rows:
            state = f"running (pid {r['pid']})" if r["running"] else "stopped"
            print(f"{r['service']:<6} {r['address']:<22} {state}")
        if args.action == "up":
            print(f"ready in {elapsed:.1f}s; data in {settings.home}")
    return 0 if args.action != "status" or all(r["running"] for r in rows) else EXIT_FAILED


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from streams.dev.demo import run_demo

    return run_demo(settings, as_json=args.json, keep_stack=args.keep_stack, timeout_s=args.timeout)
