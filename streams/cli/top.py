"""``darkroom top``: a live view per consumer group, like ``top`` for the pipeline.

Two sources. The broker gives each group's state, members and lag
(``streams.replay.groups.lags``: every partition's end minus where the group stands, the
ends fetched high watermarks, right on both brokers). The metrics endpoints
(``--metrics URL``, repeatable; by default this machine's ``DARKROOM_METRICS_PORT``) give
the rest, each computed from the difference between two scrapes ``--interval`` seconds
apart (``streams.observe.scrape``): records/s, p50/p95 step time, failures per minute, and
the dependencies a worker is paused on. Where no endpoint answered those are "–" (``null``
in JSON), with a one-line note; a broker that does not answer is the one error.

This module is the command: its arguments, the rows, the table and the JSON document.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from processors.errors import InvalidParameters
from streams.cli.common import print_json
from streams.config import Settings
from streams.observe.scrape import Scrape, Window, group_rates, scrape, windows
from streams.replay.groups import lags
from streams.runtime.offsets import Key

ORDER = ("ingest", "enhance", "upscale", "thumbnail", "results")
"""Rows in pipeline order; other groups follow alphabetically."""
PROBE_TIMEOUT_S = 5.0
"""How long the broker has to answer at all before ``broker_unavailable``."""
DASH = "–"
COLUMNS = ("GROUP", "STATE", "MEMBERS", "LAG", "MAX PART", "REC/S", "P50", "P95", "FAIL/MIN", "PAUSED")


def service_of(group: str, prefix: str) -> str | None:
    """``<prefix>darkroom.thumbnail`` → ``thumbnail``: the service, worker and operation
    name the metrics label a group's work with; None for a group darkroom did not name."""
    name = group.removeprefix(prefix)
    return name.removeprefix("darkroom.") if name.startswith("darkroom.") and name != "darkroom." else None


def lag_columns(partitions: Mapping[Key, int]) -> dict[str, Any]:
    """Total and largest lag from each partition's (``streams.runtime.offsets.lag``); None
    where the group has no committed offsets (nothing says which topics it reads)."""
    ordered = sorted(partitions.items())
    return {
        "lag": sum(partitions.values()) if partitions else None,
        "max_partition_lag": max(partitions.values()) if partitions else None,
        "partitions": [{"topic": t, "partition": p, "lag": lag} for (t, p), lag in ordered],
    }


def _order(group: str, prefix: str) -> tuple[int, str]:
    service = service_of(group, prefix)
    return (ORDER.index(service) if service in ORDER else len(ORDER), group)


def rows(settings: Settings, groups: Iterable[dict[str, Any]], found: Sequence[Window]) -> list[dict[str, Any]]:
    """One JSON row per group: broker columns (``groups``: ``lags`` rows) and metric columns."""
    out = []
    for g in sorted(groups, key=lambda g: _order(g["group"], settings.topic_prefix)):
        out.append(
            {
                "group": g["group"],
                "state": g["state"],
                "members": g["members"],
                **lag_columns(g["lag"]),
                **group_rates(g["group"], service_of(g["group"], settings.topic_prefix), found),
            }
        )
    return out


def scrape_all(urls: Sequence[str]) -> list[Scrape]:
    return [scrape(url) for url in urls]


def default_urls(settings: Settings) -> list[str]:
    return [f"http://127.0.0.1:{settings.metrics_port}/metrics"] if settings.metrics_port else []


# --- the command ----------------------------------------------------------------------


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "top",
        help="live view per consumer group: state, lag, records/s, step times, failures, pauses",
        description="Refreshes every --interval seconds until Ctrl-C. Lag comes from the broker; records/s, "
        "p50/p95 step time, failures/min and pause reasons from the metrics endpoints, as the difference "
        "between two scrapes --interval apart ('–' where no endpoint answers).",
    )
    p.add_argument(
        "--metrics",
        action="append",
        metavar="URL",
        help="a /metrics endpoint to scrape (repeatable; default: http://127.0.0.1:$DARKROOM_METRICS_PORT/metrics "
        "when that is set)",
    )
    p.add_argument("--interval", type=float, default=2.0, metavar="S", help="seconds between scrapes (default 2)")
    p.add_argument("--once", action="store_true", help="print one table and exit")
    p.add_argument("--json", action="store_true", help="print one JSON document and exit (implies --once)")
    p.set_defaults(func=cmd_top)


def _seconds(value: float | None) -> str:
    if value is None:
        return DASH
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _number(value: float | None, digits: int = 1) -> str:
    return DASH if value is None else f"{value:.{digits}f}"


def _cell(value: object) -> str:
    return DASH if value is None else str(value)


def table(found: Sequence[dict[str, Any]], caption: str | None = None) -> Any:
    from rich.table import Table

    t = Table(caption=caption, caption_justify="left", box=None, header_style="bold")
    for i, name in enumerate(COLUMNS):
        t.add_column(name, justify="left" if i in (0, 1, 9) else "right", no_wrap=i != 9)
    for r in found:
        t.add_row(
            r["group"],
            r["state"],
            _cell(r["members"]),
            _cell(r["lag"]),
            _cell(r["max_partition_lag"]),
            _number(r["records_per_s"]),
            _seconds(r["p50_s"]),
            _seconds(r["p95_s"]),
            _number(r["failures_per_min"]),
            DASH if r["paused"] is None else ", ".join(r["paused"]),
        )
    return t


def notes(urls: Sequence[str], scrapes: Sequence[Scrape]) -> list[str]:
    """One line per endpoint that did not answer, or that none is configured."""
    if not urls:
        return ["no metrics endpoint (set DARKROOM_METRICS_PORT or pass --metrics): rates and step times show –"]
    return [f"metrics endpoint {s.url} did not answer: {s.error}" for s in scrapes if not s.ok]


@dataclass
class Sampler:
    """Alternates broker reads and scrapes: each refresh is the window from the previous
    scrape to one at least ``interval_s`` later, the broker read in between."""

    settings: Settings
    urls: list[str]
    interval_s: float
    last: list[Scrape] = field(default_factory=list)

    def refresh(self) -> tuple[list[dict[str, Any]], list[Scrape]]:
        if not self.last:
            self.last = scrape_all(self.urls)
        start = time.monotonic()
        groups = lags(self.settings, PROBE_TIMEOUT_S)
        time.sleep(max(0.0, self.interval_s - (time.monotonic() - start)))
        now = scrape_all(self.urls)
        found = rows(self.settings, groups, windows(self.last, now))
        self.last = now
        return found, now


def document(found: Sequence[dict[str, Any]], scrapes: Sequence[Scrape]) -> dict[str, Any]:
    return {"groups": list(found), "endpoints": [{"url": s.url, "ok": s.ok} for s in scrapes]}


def cmd_top(args: argparse.Namespace, settings: Settings) -> int:
    from rich.console import Console

    if not args.interval > 0:
        raise InvalidParameters(f"--interval must be more than 0 seconds, not {args.interval:g}")
    urls = list(args.metrics) if args.metrics else default_urls(settings)
    sampler = Sampler(settings, urls, args.interval)
    if args.once or args.json:
        found, scrapes = sampler.refresh()
        for line in notes(urls, scrapes):
            print(f"darkroom: note: {line}", file=sys.stderr)
        if args.json:
            print_json(document(found, scrapes))
        else:
            console = Console()
            if not console.is_terminal:
                console = Console(width=200)
            console.print(table(found))
        return 0
    return _live(sampler, urls)


def _live(sampler: Sampler, urls: list[str]) -> int:
    from rich.live import Live

    from processors.errors import DarkroomError

    shown: list[dict[str, Any]] | None = None
    try:
        with Live(table([], caption="reading the broker and metrics…"), auto_refresh=False) as live:
            while True:
                try:
                    found, scrapes = sampler.refresh()
                except DarkroomError as exc:
                    if shown is None:
                        raise  # nothing to show yet: the one-line error
                    live.update(table(shown, caption=f"{exc.code}: {exc.message} (retrying)"), refresh=True)
                    time.sleep(sampler.interval_s)
                    continue
                shown = found
                caption = "\n".join(
                    [f"every {sampler.interval_s:g} s, Ctrl-C to quit", *(f"note: {n}" for n in notes(urls, scrapes))]
                )
                live.update(table(found, caption=caption), refresh=True)
    except KeyboardInterrupt:
        return 0
