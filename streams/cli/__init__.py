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

from processors.errors import ConfigurationError, DarkroomError, InvalidPipeline
from streams.cli import api, groups, models, operations, replay, stack, status, submit, top, webhooks, workers
from streams.cli.common import EXIT_FAILED, EXIT_USAGE
from streams.config import PREFIX, load_settings
from streams.errors import InvalidWebhookUrl, WebhookTargetBlocked
from streams.runtime.logs import configure_logging
from streams.wire.pipeline import PRESETS

_GROUPS = (stack, workers, api, submit, operations, models, status, webhooks, replay, groups, top)
"""In the order ``--help`` lists them."""
_SERVICES = {"run", "worker", "demo", "api"}
"""Long-running commands, whose log is their output; the others log only errors unless
DARKROOM_LOG_LEVEL says otherwise (retries of a dead server are not worth a line each)."""
_USAGE = (InvalidPipeline, ConfigurationError, InvalidWebhookUrl, WebhookTargetBlocked)
"""What the user typed or configured: exit 2, like argparse's own usage errors."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="darkroom",
        description="Event-driven image pipeline on Kafka.",
        epilog="Operations: enhance, thumbnail, upscale; presets: "
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
