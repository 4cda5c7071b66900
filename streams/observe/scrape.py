"""What two scrapes of a ``/metrics`` endpoint say, computed as Prometheus computes it.

Parsing the text exposition (``parse_samples``), a counter's increase across restarts
(``increase``, PromQL's ``increase``), cumulative bucket increases and the quantile they
give (``bucket_increase``, ``quantile``: PromQL's ``histogram_quantile``), per-second
rates; and, from darkroom's own metrics (``streams.observe.metrics``, named through
their objects), what one consumer group did between two scrapes (``group_rates``).

Pure functions of parsed scrapes; reading an endpoint (``scrape``) is the one I/O.
"""

from __future__ import annotations

import http.client
import math
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from streams.observe import metrics

RECORDS = metrics.exported_name(metrics.RECORDS_CONSUMED)
STEP_BUCKETS = metrics.exported_name(metrics.STEP_DURATION) + "_bucket"
FAILURES = metrics.exported_name(metrics.FAILURES)
PAUSED = metrics.exported_name(metrics.PAUSED)
"""The samples ``group_rates`` reads, by the name they are exported under."""

SCRAPE_TIMEOUT_S = 3.0

Labels = tuple[tuple[str, str], ...]
Samples = dict[tuple[str, Labels], float]
"""One scrape: sample value by (sample name, sorted labels)."""


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


def scrape(url: str, timeout_s: float = SCRAPE_TIMEOUT_S) -> Scrape:
    """Read one endpoint; any failure is a ``Scrape`` without samples and with the reason."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as answer:
            text = answer.read().decode("utf-8", "replace")
        return Scrape(url, time.monotonic(), parse_samples(text))
    except (OSError, http.client.HTTPException, ValueError) as exc:  # URLError, HTTPError, timeouts: OSError
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        return Scrape(url, time.monotonic(), None, str(reason) or type(exc).__name__)


# --- the arithmetic (pure) ----------------------------------------------------------------


def increase(before: float | None, after: float) -> float:
    """A counter's increase between two readings; a counter that went down was reset (its
    process restarted), so all of ``after`` is new, as Prometheus' ``increase`` counts it."""
    if before is None or after < before:
        return after
    return after - before


def per_second(amount: float, elapsed_s: float) -> float:
    return amount / elapsed_s if elapsed_s > 0 else 0.0


def select(samples: Samples, name: str, match: Mapping[str, str]) -> dict[Labels, float]:
    """The series of ``name`` whose labels include ``match``, by their labels."""
    return {
        labels: value
        for (n, labels), value in samples.items()
        if n == name and all(dict(labels).get(k) == v for k, v in match.items())
    }


def counter_increase(before: Samples, after: Samples, name: str, match: Mapping[str, str]) -> float:
    """The increase of every series of ``name`` whose labels include ``match``, summed."""
    old = select(before, name, match)
    return sum(increase(old.get(labels), value) for labels, value in select(after, name, match).items())


def _le(labels: Labels) -> float:
    return float(dict(labels)["le"])


def bucket_increase(before: Samples, after: Samples, name: str, match: Mapping[str, str]) -> list[tuple[float, float]]:
    """Cumulative histogram buckets ``(upper bound, count)`` of what was observed between
    two scrapes, summed over every series matching ``match`` (other labels, e.g. backend).

    A series whose ``+Inf`` count went down was reset: all of ``after`` counts for it.
    """
    old, new = select(before, name, match), select(after, name, match)
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


def group_rates(group: str, service: str | None, found: Sequence[Window]) -> dict[str, Any]:
    """Records/s, p50/p95 step time, failures per minute and pause reasons of consumer group
    ``group`` (whose work ``service`` labels as operation, step and worker), summed over the
    endpoints' windows; every one None where no endpoint answered twice. Quantiles are None
    also when no step finished in the window."""
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
            for labels, value in select(w.after, PAUSED, {"worker": service}).items():
                if value == 1:
                    paused.add(dict(labels).get("dependency", "?"))
    return {
        "records_per_s": records,
        "p50_s": p50,
        "p95_s": p95,
        "failures_per_min": failures,
        "paused": sorted(paused),
    }
