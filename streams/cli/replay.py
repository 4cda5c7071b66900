"""``darkroom replay``: select uploads (time, image, tenant, outcome) and re-emit them."""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from processors.errors import ConfigurationError, DarkroomError, InvalidParameters
from streams.cli.common import existing_database, print_json
from streams.config import Settings

_NOT_WITH_RESUME = {
    "--since": "since",
    "--until": "until",
    "--image-id": "image_id",
    "--ids-file": "ids_file",
    "--failed": "failed",
    "--error-code": "error_code",
    "--status": "status",
    "--tenant": "tenant",
    "--pipeline": "pipeline",
    "--force": "force",
    "--no-notify": "no_notify",
    "--rate": "rate",
    "--dry-run": "dry_run",
}
"""A resumed replay keeps its selection and options: these would be silently ignored."""
CONFIRM_ABOVE = 100
"""Selections larger than this ask before emitting (``--yes`` answers for scripts)."""
EXIT_INTERRUPTED = 130


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "replay",
        help="re-emit uploads selected by time, image, tenant or outcome (dry run, progress, resume)",
        description="Select uploads from the upload topic and emit each again as a new upload. Every filter given "
        "must hold. Without --force, steps whose outputs exist reuse them; results and webhooks are new.",
    )
    sel = p.add_argument_group("selection (at least one)")
    sel.add_argument("--since", help="record time from: ISO 8601 (2026-11-30T12:00Z) or a duration ago (2h, P1D)")
    sel.add_argument("--until", help="record time before: ISO 8601 or a duration ago")
    sel.add_argument("--image-id", action="append", default=[], metavar="ID", help="repeatable")
    sel.add_argument("--ids-file", metavar="FILE", help="image ids, one per line; - for stdin")
    sel.add_argument("--failed", action="store_true", help="images whose stored final state is failed")
    sel.add_argument("--error-code", metavar="CODE", help="failed with this code (implies --failed)")
    sel.add_argument("--status", choices=["completed", "failed"], help="images whose stored final state is this")
    sel.add_argument("--tenant")
    opt = p.add_argument_group("options")
    opt.add_argument("--pipeline", metavar="SPEC", help="run these steps instead of each upload's own")
    opt.add_argument("--force", action="store_true", help="recompute even where finished outputs exist")
    opt.add_argument("--no-notify", action="store_true", help="the new results send no webhooks")
    opt.add_argument("--rate", type=float, metavar="N", help="at most N uploads per second")
    opt.add_argument("--dry-run", action="store_true", help="print counts, a sample and the work; change nothing")
    opt.add_argument("--yes", action="store_true", help=f"do not ask before replaying over {CONFIRM_ABOVE} uploads")
    opt.add_argument("--resume", metavar="REPLAY_ID", help="continue an interrupted replay (no upload twice)")
    opt.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=cmd_replay)


def _selection(args: argparse.Namespace) -> Any:
    from streams.replay.select import Outcome, Selection

    ids = set(args.image_id)
    if args.ids_file:
        try:
            text = sys.stdin.read() if args.ids_file == "-" else Path(args.ids_file).read_text()
        except OSError as exc:
            raise InvalidParameters(f"--ids-file: {exc.strerror}: {args.ids_file}") from None
        ids.update(line.strip() for line in text.splitlines() if line.strip())
    status: Outcome | None = "failed" if args.failed or args.error_code else args.status
    if args.status and status != args.status:
        raise InvalidParameters("--failed / --error-code contradict --status completed")
    selection = Selection(
        since=_when(args.since, "--since"),
        until=_when(args.until, "--until"),
        image_ids=frozenset(ids),
        tenant=args.tenant,
        status=status,
        error_code=args.error_code,
    )
    if selection.since and selection.until and selection.since >= selection.until:
        raise InvalidParameters("--since must be before --until")
    if selection.empty:
        raise InvalidParameters(
            "replay needs a selection: --since/--until, --image-id, --ids-file, --failed, --status or --tenant"
        )
    return selection


def _when(text: str | None, flag: str) -> datetime | None:
    from streams.replay.times import parse_time

    if text is None:
        return None
    try:
        return parse_time(text)
    except ValueError as exc:
        raise InvalidParameters(f"{flag}: {exc}") from None


def _options(args: argparse.Namespace) -> Any:
    from streams.replay.replay import ReplayOptions
    from streams.wire import pipeline as pipelines

    steps = None
    if args.pipeline:
        steps = pipelines.parse_spec(args.pipeline)
        pipelines.validate(steps)
    if args.rate is not None and not (math.isfinite(args.rate) and args.rate > 0):
        raise InvalidParameters("--rate must be a number > 0")
    return ReplayOptions(pipeline=steps, force=args.force, notify=not args.no_notify, rate=args.rate)


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from streams.replay import replay
    from streams.replay.select import Selected, select

    if args.resume:
        given = [flag for flag, value in _NOT_WITH_RESUME.items() if getattr(args, value)]
        if given:
            raise InvalidParameters(f"--resume continues a replay as it was started; drop {', '.join(given)}")
        state = replay.load(settings, args.resume)
    else:
        selection = _selection(args)
        options = _options(args)
        db = existing_database(settings) if selection.status else None
        found = Selected() if selection.status and db is None else select(settings, selection, db)
        plan = {**replay.summary(found.uploads, options), "scanned": found.scanned, "missing": found.missing}
        if args.dry_run or not found.uploads:
            _report(args, {"dry_run": args.dry_run, **plan})
            return 0
        if len(found.uploads) > CONFIRM_ABOVE and not args.yes and not _confirm(len(found.uploads)):
            raise InvalidParameters(
                f"{len(found.uploads)} uploads selected and not confirmed; pass --yes to replay them"
            )
        state = replay.new_state(found.uploads, options)
    if state.done:
        raise ConfigurationError(f"replay {state.replay_id} already emitted all {len(state.uploads)} uploads")
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())  # stop between batches: progress is saved
    try:
        with _bar(len(state.uploads), state.emitted, show=sys.stderr.isatty() and not args.json) as on_progress:
            replay.run(settings, state, stop=stop, progress=on_progress)
    except DarkroomError:  # an outage: say how to go on before the error's own line
        print(
            f"darkroom: replay {state.replay_id} stopped after {state.emitted}; resume with: "
            f"darkroom replay --resume {state.replay_id}",
            file=sys.stderr,
        )
        raise
    finally:
        signal.signal(signal.SIGINT, previous)
    outcome = {"replay_id": state.replay_id, "emitted": state.emitted, "selected": len(state.uploads)}
    if not state.done:
        print(
            f"darkroom: interrupted after {state.emitted} of {len(state.uploads)}; "
            f"resume with: darkroom replay --resume {state.replay_id}",
            file=sys.stderr,
        )
        _report(args, {**outcome, "interrupted": True})
        return EXIT_INTERRUPTED
    _report(args, outcome)
    return 0


def _confirm(count: int) -> bool:
    if not sys.stdin.isatty():
        return False
    try:
        return input(f"replay {count} uploads? [y/N] ").strip().lower() in {"y", "yes"}
    except EOFError:
        return False


def _report(args: argparse.Namespace, doc: dict[str, Any]) -> None:
    if args.json:
        print_json(doc)
        return
    for key, value in doc.items():
        print(f"{key}: {value}")


class _bar:
    """A rich progress bar (count, rate, ETA) on stderr; a no-op when not shown."""

    def __init__(self, total: int, done: int, *, show: bool) -> None:
        self.progress = Progress(
            TextColumn("[bold]replaying"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.description}"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            disable=not show,
        )
        self.task = self.progress.add_task("", total=total, completed=done)
        self.first, self.started = done, time.monotonic()

    def __enter__(self) -> Any:
        self.progress.start()
        return self.update

    def update(self, emitted: int) -> None:
        rate = (emitted - self.first) / max(time.monotonic() - self.started, 1e-6)
        self.progress.update(self.task, completed=emitted, description=f"{rate:.0f}/s")

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()
