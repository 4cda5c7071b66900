"""The one backoff policy (pure): doubling, capped, jittered; reset by a success."""

from __future__ import annotations

import random

from streams.runtime.retry import Backoff, backoff_delay


def test_the_delay_doubles_from_the_first_up_to_the_cap_within_the_jitter() -> None:
    random.seed(3)
    for attempt, base in enumerate([1, 2, 4, 8, 16, 30, 30], start=1):
        delay = backoff_delay(attempt, 1.0, 30.0)
        assert base * 0.5 <= delay <= base


def test_backoff_counts_failures_in_a_row_and_starts_over_after_a_success() -> None:
    backoff = Backoff(0.2, 1.0)
    delays = [backoff.next() for _ in range(5)]
    assert backoff.failures == 5 and 0.1 <= delays[0] <= 0.2 and all(0.5 <= d <= 1.0 for d in delays[3:])
    backoff.reset()
    assert backoff.failures == 0 and backoff.next() <= 0.2
