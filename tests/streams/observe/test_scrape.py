"""The scrape arithmetic (``streams.observe.scrape``) on its own: PromQL's ``increase``
across counter resets, ``histogram_quantile`` over bucket increases, rates per group, and
series that are missing from one scrape or both."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from streams.observe import metrics
from streams.observe.scrape import (
    FAILURES,
    PAUSED,
    RECORDS,
    STEP_BUCKETS,
    Samples,
    Scrape,
    Window,
    bucket_increase,
    counter_increase,
    group_rates,
    increase,
    parse_samples,
    quantile,
    scrape,
    windows,
)

INF = math.inf


def sample(name: str, value: float, **labels: str) -> Samples:
    return {(name, tuple(sorted(labels.items()))): value}


def buckets(op: str, backend: str, counts: dict[float, float]) -> Samples:
    out: Samples = {}
    for bound, count in counts.items():
        le = "+Inf" if bound == INF else repr(bound)
        out |= sample(STEP_BUCKETS, count, operation=op, backend=backend, le=le)
    return out


def test_quantile_interpolates_within_the_bucket_the_rank_falls_in() -> None:
    cumulative = [(0.1, 0.0), (0.5, 10.0), (1.0, 10.0), (INF, 10.0)]
    assert quantile(0.5, cumulative) == pytest.approx(0.3)  # 0.1 + 0.4 * 5/10
    assert quantile(0.95, cumulative) == pytest.approx(0.48)  # 0.1 + 0.4 * 9.5/10
    assert quantile(1.0, cumulative) == pytest.approx(0.5)
    first = [(0.1, 4.0), (1.0, 4.0), (INF, 4.0)]
    assert quantile(0.5, first) == pytest.approx(0.05)  # the first bucket starts at 0


def test_quantile_in_the_inf_bucket_is_the_largest_finite_bound() -> None:
    assert quantile(0.5, [(1.0, 1.0), (2.5, 1.0), (INF, 4.0)]) == 2.5
    assert quantile(0.5, [(INF, 4.0)]) is None


def test_quantile_of_nothing_is_none() -> None:
    assert quantile(0.5, []) is None
    assert quantile(0.5, [(1.0, 0.0), (INF, 0.0)]) is None
    with pytest.raises(ValueError, match="not in"):
        quantile(0.0, [(1.0, 1.0), (INF, 1.0)])


def test_counter_increase_treats_a_drop_as_a_restart() -> None:
    assert increase(None, 5.0) == 5.0  # a series born between the scrapes
    assert increase(3.0, 5.0) == 2.0
    assert increase(10.0, 4.0) == 4.0  # the process restarted: everything after counts
    before = sample(RECORDS, 10, group="g", topic="a") | sample(RECORDS, 99, group="other", topic="a")
    after = (
        sample(RECORDS, 15, group="g", topic="a")
        | sample(RECORDS, 7, group="g", topic="b")
        | sample(RECORDS, 500, group="other", topic="a")
    )
    assert counter_increase(before, after, RECORDS, {"group": "g"}) == 12.0  # 5 on a, 7 new on b


def test_bucket_increase_sums_backends_and_handles_resets() -> None:
    before = buckets("op", "pillow", {0.1: 2, 1.0: 5, INF: 5}) | buckets("op", "torch", {0.1: 0, 1.0: 9, INF: 10})
    after = (
        buckets("op", "pillow", {0.1: 4, 1.0: 9, INF: 9})  # +2 under 0.1, +2 more under 1
        | buckets("op", "torch", {0.1: 1, 1.0: 1, INF: 1})  # reset (count 10 → 1): all of it is new
        | buckets("other", "pillow", {0.1: 50, 1.0: 50, INF: 50})
    )
    assert bucket_increase(before, after, STEP_BUCKETS, {"operation": "op"}) == [(0.1, 3.0), (1.0, 5.0), (INF, 5.0)]
    assert bucket_increase(after, after, STEP_BUCKETS, {"operation": "op"}) == [(0.1, 0.0), (1.0, 0.0), (INF, 0.0)]
    assert bucket_increase(before, after, STEP_BUCKETS, {"operation": "none"}) == []


def test_group_rates_from_windows() -> None:
    before = (
        sample(RECORDS, 100, group="p.darkroom.thumbnail", topic="t")
        | buckets("thumbnail", "pillow", {0.025: 0, 0.05: 0, INF: 0})
        | sample(FAILURES, 1, step="thumbnail", code="not_an_image")
    )
    after = (
        sample(RECORDS, 120, group="p.darkroom.thumbnail", topic="t")
        | buckets("thumbnail", "pillow", {0.025: 0, 0.05: 10, INF: 10})
        | sample(FAILURES, 3, step="thumbnail", code="not_an_image")
        | sample(PAUSED, 1, worker="thumbnail", dependency="storage")
        | sample(PAUSED, 0, worker="thumbnail", dependency="registry")
        | sample(PAUSED, 1, worker="ingest", dependency="broker")
    )
    found = group_rates("p.darkroom.thumbnail", "thumbnail", [Window(before, after, 4.0)])
    assert found == {
        "records_per_s": 5.0,
        "p50_s": pytest.approx(0.0375),  # 0.025 + 0.025 * 5/10
        "p95_s": pytest.approx(0.04875),
        "failures_per_min": 30.0,
        "paused": ["storage"],
    }
    idle = group_rates("p.darkroom.enhance", "enhance", [Window(before, after, 4.0)])
    assert idle == {"records_per_s": 0.0, "p50_s": None, "p95_s": None, "failures_per_min": 0.0, "paused": []}
    assert set(group_rates("g", "thumbnail", []).values()) == {None}


def test_windows_pair_only_endpoints_that_answered_twice() -> None:
    a1, a2 = Scrape("a", 1.0, {}), Scrape("a", 3.5, sample(RECORDS, 1, group="g"))
    b1, b2 = Scrape("b", 1.0, None, "refused"), Scrape("b", 3.5, {})
    c1, c2 = Scrape("c", 1.0, {}), Scrape("c", 3.5, None, "timed out")
    assert windows([a1, b1, c1], [a2, b2, c2]) == [Window({}, sample(RECORDS, 1, group="g"), 2.5)]


def test_missing_series_count_nothing() -> None:
    """A series in neither scrape adds nothing; one gone from the later scrape (its process
    exited) adds nothing either; one only in the later scrape counts from zero."""
    before = sample(RECORDS, 10, group="g", topic="a")
    assert counter_increase(before, {}, RECORDS, {"group": "g"}) == 0.0
    assert counter_increase({}, {}, RECORDS, {"group": "g"}) == 0.0
    assert counter_increase({}, before, RECORDS, {"group": "g"}) == 10.0
    assert bucket_increase(buckets("op", "pillow", {0.1: 2, INF: 2}), {}, STEP_BUCKETS, {"operation": "op"}) == []
    assert quantile(0.5, bucket_increase({}, {}, STEP_BUCKETS, {"operation": "op"})) is None


def test_the_names_read_are_those_the_metrics_export() -> None:
    assert RECORDS == "darkroom_records_consumed_total" == metrics.exported_name(metrics.RECORDS_CONSUMED)
    assert STEP_BUCKETS == "darkroom_step_duration_seconds_bucket"
    assert (FAILURES, PAUSED) == ("darkroom_failures_total", "darkroom_worker_paused")


def test_parse_samples_reads_the_names_darkroom_exports() -> None:
    assert {RECORDS, FAILURES, PAUSED, STEP_BUCKETS.removesuffix("_bucket")} <= set(metrics.NAMES)
    registry = CollectorRegistry()
    Counter(RECORDS, "", ["group", "topic"], registry=registry).labels("g", "t").inc(3)
    Histogram("darkroom_step_duration_seconds", "", ["operation"], buckets=(0.1,), registry=registry).labels(
        "op"
    ).observe(0.05)
    Gauge(PAUSED, "", ["worker", "dependency"], registry=registry).labels("w", "storage").set(1)
    found = parse_samples(generate_latest(registry).decode())
    assert found[(RECORDS, (("group", "g"), ("topic", "t")))] == 3.0
    assert found[(STEP_BUCKETS, (("le", "0.1"), ("operation", "op")))] == 1.0
    assert found[(PAUSED, (("dependency", "storage"), ("worker", "w")))] == 1.0
    assert not any(name.endswith("_created") for name, _ in found)


def test_an_endpoint_that_does_not_answer_is_a_failed_scrape_not_an_error() -> None:
    found = scrape("http://127.0.0.1:1/metrics", timeout_s=1.0)
    assert not found.ok and found.error
