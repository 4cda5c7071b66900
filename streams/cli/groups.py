"""``darkroom groups list|reset``: consumer groups and their committed offsets, like ``kafka-consumer-groups``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from processors.errors import InvalidParameters
from streams.cli.common import print_json
from streams.config import Settings

PLAN_COLUMNS = ("GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET")
LIST_COLUMNS = ("GROUP", "STATE", "MEMBERS", "TOPICS")


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("groups", help="list consumer groups; reset their committed offsets (dry run first)")
    actions = p.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="groups with their state, members and topics with committed offsets")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_list)
    reset = actions.add_parser(
        "reset",
        help="move a group's committed offsets (refused while it has active members)",
        description="Plan a reset of GROUP's committed offsets and print it; --execute then commits exactly "
        "that plan. New offsets are clamped to what each partition holds. Refused while the group has "
        "active members. Without --topic, the partitions the group has committed offsets for.",
    )
    reset.add_argument("group", metavar="GROUP")
    to = reset.add_mutually_exclusive_group(required=True)
    to.add_argument("--to-datetime", metavar="T", help="first record at or after T (ISO 8601, naive means UTC)")
    to.add_argument("--by-duration", metavar="D", help="first record at or after now minus D (2h, 30m, P1D, PT2H)")
    to.add_argument("--to-earliest", action="store_true", help="the earliest offset each partition holds")
    to.add_argument("--to-latest", action="store_true", help="the end of each partition")
    to.add_argument("--shift-by", type=int, metavar="N", help="current offset plus N (negative: back)")
    reset.add_argument("--topic", metavar="T", help="every partition of this topic (its full name, as listed)")
    mode = reset.add_mutually_exclusive_group(required=True)
    mode.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    mode.add_argument("--execute", action="store_true", help="print the plan, then commit it")
    reset.add_argument("--json", action="store_true", help="print one JSON document: the plan and the outcome")
    reset.set_defaults(func=cmd_reset)


def _table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned columns, as wide as their widest cell (``kafka-consumer-groups``' layout)."""
    cells = [[str(c) for c in columns], *[["-" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells)


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    from streams.replay.groups import list_groups

    groups = list_groups(settings)
    if args.json:
        print_json({"groups": groups})
    else:
        print(_table(LIST_COLUMNS, [(g["group"], g["state"], g["members"], ",".join(g["topics"])) for g in groups]))
    return 0


def _reset_options(args: argparse.Namespace) -> dict[str, Any]:
    """The one way of choosing offsets that argparse let through, as ``plan_reset``'s keywords."""
    from streams.replay.times import parse_datetime, parse_duration

    try:
        to_datetime = parse_datetime(args.to_datetime) if args.to_datetime else None
    except ValueError as exc:
        raise InvalidParameters(f"--to-datetime: {exc}") from None
    try:
        by_duration = parse_duration(args.by_duration) if args.by_duration else None
    except ValueError as exc:
        raise InvalidParameters(f"--by-duration: {exc}") from None
    return {
        "to_datetime": to_datetime,
        "by_duration": by_duration,
        "to_earliest": args.to_earliest,
        "to_latest": args.to_latest,
        "shift_by": args.shift_by,
        "topic": args.topic,
    }


def cmd_reset(args: argparse.Namespace, settings: Settings) -> int:
    from streams.replay.groups import execute_reset, plan_reset

    plan = plan_reset(settings, args.group, **_reset_options(args))
    rows = [
        {"topic": r.topic, "partition": r.partition, "current_offset": r.current, "new_offset": r.new} for r in plan
    ]
    if not args.json:
        print(_table(PLAN_COLUMNS, [(args.group, *row.values()) for row in rows]), flush=True)
    if args.execute:
        execute_reset(settings, args.group, plan)
    if args.json:
        print_json({"group": args.group, "executed": args.execute, "plan": rows})
    elif args.execute:
        print(f"reset {len(plan)} partitions of group {args.group}; committed offsets read back as planned")
    else:
        print("dry run: nothing changed; run again with --execute to commit this plan")
    return 0
