"""``darkroom top``: a live view per consumer group, like ``top`` for the pipeline.

Two sources. The broker gives each group's state and members (``list_groups``) and its
lag: every partition's end minus the group's committed offset (the earliest offset where
it has none: the group would start there), the end found as ``streams.replay.offsets``
finds it (on the embedded broker by reading, as its ListOffsets end is wrong). The
metrics endpoints (``--metrics URL``, repeatable; by default this machine's
``DARKROOM_METRICS_PORT``) give the rest, each computed from the difference between two
scrapes ``--interval`` seconds apart: records/s, p50/p95 step time, failures per minute,
and the dependencies a worker is paused on. Where no endpoint answered those are "–"
(``null`` in JSON), with a one-line note; a broker that does not answer is the one error.

The math (counter increases, quantiles from histogram bucket deltas) is pure functions
of parsed scrapes, below the I/O.
"""

from __future__ import annotations

import argparse
import http.client
import math
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from processors.errors import BrokerUnavailable, InvalidParameters
from streams.cli.common import print_json
from streams.config import Settings

RECORDS = "darkroom_records_consumed_total"
STEP_BUCKETS = "darkroom_step_duration_seconds_bucket"
FAILURES = "darkroom_failures_total"
PAUSED = "darkroom_worker_paused"
"""The samples read (``streams.observe.metrics``), by the name they are exported under."""

ORDER = ("ingest", "enhance", "upscale", "thumbnail", "results")
"""Rows in pipeline order; other groups follow alphabetically."""
SCRAPE_TIMEOUT_S = 3.0
PROBE_TIMEOUT_S = 5.0
"""How long the broker has to answer at all before ``broker_unavailable``."""
DASH = "–"
COLUMNS = ("GROUP", "STATE", "MEMBERS", "LAG", "MAX PART", "REC/S", "P50", "P95", "FAIL/MIN", "PAUSED")

Labels = tuple[tuple[str, str], ...]
Samples = dict[tuple[str, Labels], float]
"""One scrape: sample value by (sample name, sorted labels)."""


# --- scrapes and the math on them (pure) ------------------------------------------------


@dataclass(frozen=True)
class Scrape:
    """One endpoint's answer: its samples when it answered (``at``: ``time.monotonic()``)."""

    url: str
    at: float
    samples: Samples | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.samples is not None


def parse_samples(text: str) -> Samples:
    """The samples of a Prometheus text exposition (``_created`` timestamps left out)."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if not s.name.endswith("_created"):
                samples[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return samples


def increase(before: float | None, after: float) -> float:
    """A counter's increase between two readings; a counter that went down was reset (its
    process restarted), so all of ``after`` is new, as Prometheus' ``increase`` counts it."""
    if before is None or after < before:
        return after
    return after - before


def per_second(amount: float, elapsed_s: float) -> float:
    return amount / elapsed_s if elapsed_s > 0 else 0.0


def _select(samples: Samples, name: str, match: Mapping[str, str]) -> dict[Labels, float]:
    return {
        labels: value
        for (n, labels), value in samples.items()
        if n == name and all(dict(labels).get(k) == v for k, v in match.items())
    }


def counter_increase(before: Samples, after: Samples, name: str, match: Mapping[str, str]) -> float:
    """The increase of every series of ``name`` whose labels include ``match``, summed."""
    old = _select(before, name, match)
    return sum(increase(old.get(labels), value) for labels, value in _select(after, name, match).items())


def _le(labels: Labels) -> float:
    return float(dict(labels)["le"])


def bucket_increase(before: Samples, after: Samples, name: str, match: Mapping[str, str]) -> list[tuple[float, float]]:
    """Cumulative histogram buckets ``(upper bound, count)`` of what was observed between
    two scrapes, summed over every series matching ``match`` (other labels, e.g. backend).

    A series whose ``+Inf`` count went down was reset: all of ``after`` counts for it.
    """
    old, new = _select(before, name, match), _select(after, name, match)
    series: dict[Labels, dict[float, tuple[float | None, float]]] = {}
    for labels, value in new.items():
        rest = tuple(kv for kv in labels if kv[0] != "le")
        series.setdefault(rest, {})[_le(labels)] = (old.get(labels), value)
    total: dict[float, float] = {}
    for buckets in series.values():
        inf_before, inf_after = buckets.get(math.inf, (None, 0.0))
        reset = inf_before is None or inf_after < inf_before
        for bound, (b, a) in buckets.items():
            total[bound] = total.get(bound, 0.0) + (a if reset or b is None else max(0.0, a - b))
    out, running = [], 0.0
    for bound in sorted(total):
        running = max(running, total[bound])  # cumulative: never down, whatever a scrape raced
        out.append((bound, running))
    return out


def quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The ``q``-quantile (0 < q <= 1) of cumulative buckets, as Prometheus'
    ``histogram_quantile`` estimates it: linear within the bucket the rank falls in, the
    largest finite bound when it falls in ``+Inf``. None without observations."""
    if not 0 < q <= 1:
        raise ValueError(f"quantile {q} is not in (0, 1]")
    if not buckets or buckets[-1][0] != math.inf or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for i, (bound, count) in enumerate(buckets):
        if count >= rank:
            if bound == math.inf:
                return buckets[i - 1][0] if i > 0 else None
            if i == 0 and bound <= 0:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return None  # unreachable: the +Inf bucket holds every observation


def service_of(group: str, prefix: str) -> str | None:
    """``<prefix>darkroom.thumbnail`` → ``thumbnail``: the service, worker and operation
    name the metrics label a group's work with; None for a group darkroom did not name."""
    name = group.removeprefix(prefix)
    return name.removeprefix("darkroom.") if name.startswith("darkroom.") and name != "darkroom." else None


@dataclass(frozen=True)
class Window:
    """Two scrapes of one endpoint, ``elapsed_s`` apart."""

    before: Samples
    after: Samples
    elapsed_s: float


def windows(before: Sequence[Scrape], after: Sequence[Scrape]) -> list[Window]:
    """Endpoint by endpoint, the pairs of scrapes that both answered."""
    first = {s.url: s for s in before}
    return [
        Window(first[s.url].samples or {}, s.samples, s.at - first[s.url].at)
        for s in after
        if s.samples is not None and s.url in first and first[s.url].ok
    ]


def metric_columns(group: str, service: str | None, found: Sequence[Window]) -> dict[str, Any]:
    """Records/s, p50/p95 step time, failures per minute and pause reasons of ``group``,
    summed over the endpoints' windows; every one None where no endpoint answered twice.
    Quantiles are None also when no step finished in the window."""
    if not found:
        return {"records_per_s": None, "p50_s": None, "p95_s": None, "failures_per_min": None, "paused": None}
    records = sum(
        per_second(counter_increase(w.before, w.after, RECORDS, {"group": group}), w.elapsed_s) for w in found
    )
    p50 = p95 = None
    failures = 0.0
    paused: set[str] = set()
    if service is not None:
        merged: dict[float, float] = {}
        for w in found:
            for bound, count in bucket_increase(w.before, w.after, STEP_BUCKETS, {"operation": service}):
                merged[bound] = merged.get(bound, 0.0) + count
        buckets = sorted(merged.items())
        p50, p95 = quantile(0.5, buckets), quantile(0.95, buckets)
        failures = sum(
            60 * per_second(counter_increase(w.before, w.after, FAILURES, {"step": service}), w.elapsed_s)
            for w in found
        )
        for w in found:
            for labels, value in _select(w.after, PAUSED, {"worker": service}).items():
                if value == 1:
                    paused.add(dict(labels).get("dependency", "?"))
    return {
        "records_per_s": records,
        "p50_s": p50,
        "p95_s": p95,
        "failures_per_min": failures,
        "paused": sorted(paused),
    }


def lag_columns(partitions: Mapping[tuple[str, int], tuple[int, int]]) -> dict[str, Any]:
    """Total and largest partition lag from each partition's (position, end); None where
    the group has no committed offsets (nothing says which topics it reads)."""
    ordered = sorted(partitions.items())
    lags = [max(0, end - position) for _, (position, end) in ordered]
    return {
        "lag": sum(lags) if lags else None,
        "max_partition_lag": max(lags) if lags else None,
        "partitions": [
            {"topic": t, "partition": p, "lag": lag} for ((t, p), _), lag in zip(ordered, lags, strict=True)
        ],
    }


def _order(group: str, prefix: str) -> tuple[int, str]:
    service = service_of(group, prefix)
    return (ORDER.index(service) if service in ORDER else len(ORDER), group)


def rows(settings: Settings, groups: Iterable[dict[str, Any]], found: Sequence[Window]) -> list[dict[str, Any]]:
    """One JSON row per group: broker columns (``groups``: ``list_groups`` rows with
    ``partitions`` by (topic, partition) → (position, end)) and metric columns."""
    out = []
    for g in sorted(groups, key=lambda g: _order(g["group"], settings.topic_prefix)):
        service = service_of(g["group"], settings.topic_prefix)
        out.append(
            {
                "group": g["group"],
                "state": g["state"],
                "members": g["members"],
                **lag_columns(g["partitions"]),
                **metric_columns(g["group"], service, found),
            }
        )
    return out


# --- I/O: metrics endpoints -----------------------------------------------------------


def scrape(url: str, timeout_s: float = SCRAPE_TIMEOUT_S) -> Scrape:
    """Read one endpoint; any failure is a ``Scrape`` without samples and with the reason."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as answer:
            text = answer.read().decode("utf-8", "replace")
        return Scrape(url, time.monotonic(), parse_samples(text))
    except (OSError, http.client.HTTPException, ValueError) as exc:  # URLError, HTTPError, timeouts: OSError
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        return Scrape(url, time.monotonic(), None, str(reason) or type(exc).__name__)


def scrape_all(urls: Sequence[str]) -> list[Scrape]:
    return [scrape(url) for url in urls]


def default_urls(settings: Settings) -> list[str]:
    return [f"http://127.0.0.1:{settings.metrics_port}/metrics"] if settings.metrics_port else []


# --- I/O: the broker ------------------------------------------------------------------


def probe_broker(settings: Settings) -> dict[str, list[int]]:
    """Every topic's partitions, or ``BrokerUnavailable`` within ``PROBE_TIMEOUT_S``."""
    from streams.replay.offsets import broker_errors
    from streams.runtime.kafka import make_admin

    with broker_errors(f"cannot reach Kafka at {settings.bootstrap_servers()}"):
        meta = make_admin(settings).list_topics(timeout=PROBE_TIMEOUT_S)
    return {name: sorted(t.partitions) for name, t in meta.topics.items() if t.error is None}


def committed_offsets(settings: Settings, group: str) -> dict[tuple[str, int], int]:
    """``group``'s committed offsets by (topic, partition); partitions without one left out."""
    from streams.replay.groups import committed
    from streams.runtime.kafka import make_admin

    return committed(make_admin(settings), group)


@dataclass
class Ends:
    """Partition ends, remembered between refreshes: on the embedded broker an end is found
    by reading, and a partition's end never goes back, so the next read starts there."""

    known: dict[tuple[str, int], int] = field(default_factory=dict)

    def read(self, settings: Settings, starts: Mapping[tuple[str, int], int]) -> dict[tuple[str, int], int]:
        """The end of every partition in ``starts`` (where reading may start: nothing
        before it is needed)."""
        from streams.replay.offsets import end_offsets

        if not settings.embedded_kafka:
            by_topic: dict[str, list[int]] = {}
            for t, p in sorted(starts):
                by_topic.setdefault(t, []).append(p)
            for t, parts in by_topic.items():
                self.known.update({(t, p): end for p, end in end_offsets(settings, t, parts).items()})
        else:
            self._read_embedded(settings, starts)
        return {tp: self.known[tp] for tp in starts}

    def _read_embedded(self, settings: Settings, starts: Mapping[tuple[str, int], int]) -> None:
        from confluent_kafka import TopicPartition

        from streams.replay.offsets import IDLE_S, broker_errors, reader_id
        from streams.runtime.topics import read_until_idle

        if not starts:
            return
        begin = {tp: max(start, self.known.get(tp, 0)) for tp, start in starts.items()}
        ends = dict(begin)
        positions = [TopicPartition(t, p, offset) for (t, p), offset in sorted(begin.items())]
        with broker_errors("cannot read the groups' topics to their end"):
            for msg in read_until_idle(settings, positions, reader_id(), IDLE_S):
                topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
                if topic is not None and partition is not None and offset is not None and (topic, partition) in ends:
                    ends[(topic, partition)] = max(ends[(topic, partition)], offset + 1)
        self.known.update(ends)


def read_groups(settings: Settings, ends: Ends) -> list[dict[str, Any]]:
    """``list_groups`` rows, each with ``partitions``: (topic, partition) → (position, end)
    for every partition of the topics it has committed offsets for."""
    from streams.replay.groups import list_groups
    from streams.replay.offsets import broker_errors, earliest_offsets

    topics = probe_broker(settings)
    try:
        with broker_errors("cannot read the consumer groups"):
            groups = list_groups(settings)
            committed = {g["group"]: committed_offsets(settings, g["group"]) for g in groups}
        positions: dict[str, dict[tuple[str, int], int]] = {}
        earliest: dict[str, dict[int, int]] = {}
        for g in groups:
            here = positions[g["group"]] = {}
            for t in g["topics"]:
                for p in topics.get(t, []):
                    offset = committed[g["group"]].get((t, p))
                    if offset is None:
                        if t not in earliest:
                            earliest[t] = earliest_offsets(settings, t, topics[t])
                        offset = earliest[t][p]
                    here[(t, p)] = offset
        starts: dict[tuple[str, int], int] = {}
        for here in positions.values():
            for tp, offset in here.items():
                starts[tp] = min(offset, starts.get(tp, offset))
        found = ends.read(settings, starts)
    except TimeoutError:
        raise BrokerUnavailable(f"Kafka at {settings.bootstrap_servers()} did not answer in time") from None
    for g in groups:
        g["partitions"] = {tp: (offset, found[tp]) for tp, offset in positions[g["group"]].items()}
    return groups


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
    ends: Ends = field(default_factory=Ends)
    last: list[Scrape] = field(default_factory=list)

    def refresh(self) -> tuple[list[dict[str, Any]], list[Scrape]]:
        if not self.last:
            self.last = scrape_all(self.urls)
        start = time.monotonic()
        groups = read_groups(self.settings, self.ends)
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
