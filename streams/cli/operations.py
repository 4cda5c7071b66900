"""``darkroom operations``: every operation's parameters (defaults, accepted values, units) and the presets."""

from __future__ import annotations

import argparse
from typing import Any

from streams.cli.common import print_json
from streams.config import Settings


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "operations", help="list the operations, their parameters (defaults, values, units) and the presets"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_operations)


def cmd_operations(args: argparse.Namespace, settings: Settings) -> int:
    from streams.wire.pipeline import catalog

    found = catalog()
    if args.json:
        print_json(found)
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for op in found["operations"]:
        table = Table(title=f"{op['name']}", title_justify="left")
        for column in ("parameter", "default", "accepts"):
            table.add_column(column)
        for param in op["parameters"]:
            table.add_row(param["name"], param["default"], param["accepts"])
        console.print(table)
    console.print("presets (usable wherever a spec is):")
    for preset in found["presets"]:
        console.print(f"  {preset['name']:<10} {preset['spec']}", highlight=False)
    console.print(
        "A spec: op[:key=value],key=value,op2[:key=value]… e.g. 'enhance,thumbnail:sizes=256+1024,format=webp'"
    )
    return 0
