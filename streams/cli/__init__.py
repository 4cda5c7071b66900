"""``darkroom`` command line: one module per command group, each a thin layer over library calls.

Every failure is one line on stderr (``darkroom: error: CODE: message``) and a non-zero
exit: 2 for usage and configuration mistakes, 1 for everything else.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib.metadata import version
from typing import NoReturn

from processors import KNOWN_OPERATIONS
from processors.errors import ConfigurationError, DarkroomError, InvalidPipeline
from streams.cli import api, groups, models, operations, replay, stack, status, submit, top, webhooks, workers
from streams.cli.common import EXIT_FAILED, EXIT_USAGE
from streams.config import PREFIX, load_settings
from streams.errors import InvalidTenant, InvalidWebhookUrl, WebhookTargetBlocked
from streams.runtime.logs import configure_logging
from streams.wire.pipeline import PRESETS

_GROUPS = (stack, workers, api, submit, operations, models, status, webhooks, replay, groups, top)
"""In the order ``--help`` lists them."""
_SERVICES = {"run", "worker", "demo", "api"}
"""Long-running commands, whose log is their output; the others log only errors unless
DARKROOM_LOG_LEVEL says otherwise (retries of a dead server are not worth a line each)."""
_USAGE = (InvalidPipeline, ConfigurationError, InvalidTenant, InvalidWebhookUrl, WebhookTargetBlocked)
"""What the user typed or configured: exit 2, like argparse's own usage errors."""


class Parser(argparse.ArgumentParser):
    """argparse as every darkroom command parses: positionals and options in any order
    (``apikeys revoke --tenant T KEY_ID`` and ``apikeys revoke KEY_ID --tenant T`` alike),
    and a usage error is one line like any other error, not the usage and then a line.

    Subcommand parsers are of this class too (``add_subparsers`` makes its parsers of the
    class of the parser it is called on). A parser with subcommands parses as argparse
    does (``parse_intermixed_args`` cannot), its subcommands intermixed.
    """

    _intermixing = False

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if self._intermixing or not self._can_intermix():
            return super().parse_known_args(args, namespace)
        self._intermixing = True  # parse_known_intermixed_args calls back here, twice
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False

    def _can_intermix(self) -> bool:
        positionals = self._get_positional_actions()
        grouped = {id(a) for group in self._mutually_exclusive_groups for a in group._group_actions}
        return all(a.nargs not in (argparse.PARSER, argparse.REMAINDER) and id(a) not in grouped for a in positionals)

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("darkroom").strip()
        where = f"{command}: " if command else ""
        self.exit(EXIT_USAGE, f"darkroom: error: invalid_parameters: {where}{message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="darkroom",
        description="Event-driven image pipeline on Kafka.",
        epilog="Operations: "
        + ", ".join(KNOWN_OPERATIONS)
        + "; presets: "
        + ", ".join(PRESETS)
        + ". `darkroom operations` lists every parameter with its default, values and units."
        " A pipeline spec: 'enhance,thumbnail:sizes=256+1024,format=webp'.",
    )
    parser.add_argument("--version", action="version", version=f"darkroom {version('darkroom')}")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in _GROUPS:
        group.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        if args.command not in _SERVICES and PREFIX + "LOG_LEVEL" not in os.environ:
            settings = settings.replace(log_level="error")  # a failure is its one error line
        configure_logging(settings)
        code: int = args.func(args, settings)
        return code
    except DarkroomError as exc:
        print(f"darkroom: error: {exc.code}: {exc.message}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, _USAGE) else EXIT_FAILED
    except KeyboardInterrupt:
        return 130
