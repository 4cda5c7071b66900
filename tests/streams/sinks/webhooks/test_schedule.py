"""The retry schedule: Standard Webhooks' delays, jitter, and ``Retry-After`` waited out but capped."""

from __future__ import annotations

import random

import pytest

from streams.config import Settings, parse_schedule
from streams.sinks.webhooks.schedule import JITTER, MAX_RETRY_AFTER_S, next_delay

SCHEDULE = Settings().webhook_schedule


def test_the_default_schedule_is_the_standard_webhooks_one() -> None:
    assert SCHEDULE == (0, 5, 300, 1800, 7200, 18000, 36000, 36000)


def test_next_delay_follows_the_schedule_within_the_jitter_until_exhausted() -> None:
    rng = random.Random(1)
    for attempts_made, base in enumerate(SCHEDULE):
        delay = next_delay(attempts_made, SCHEDULE, None, rng)
        assert delay is not None and base * (1 - JITTER) <= delay <= base * (1 + JITTER)
    assert next_delay(0, SCHEDULE, None, rng) == 0
    assert next_delay(len(SCHEDULE), SCHEDULE, None, rng) is None
    assert next_delay(len(SCHEDULE), SCHEDULE, 5.0, rng) is None
    with pytest.raises(ValueError):
        next_delay(-1, SCHEDULE)


def test_jitter_is_deterministic_given_the_rng_and_varies_between_draws() -> None:
    def draws(seed: int) -> list[float | None]:
        rng = random.Random(seed)
        return [next_delay(3, SCHEDULE, None, rng) for _ in range(20)]

    assert draws(7) == draws(7)
    assert draws(7) != draws(8)
    assert len(set(draws(7))) > 10


def test_retry_after_is_waited_out_but_capped() -> None:
    rng = random.Random(3)
    assert next_delay(1, SCHEDULE, 120.0, rng) == 120.0  # longer than the scheduled 5 s
    delay = next_delay(2, SCHEDULE, 1.0, rng)  # shorter than the scheduled 300 s
    assert delay is not None and delay >= 300 * (1 - JITTER)
    assert next_delay(1, SCHEDULE, 10.0**9, rng) == MAX_RETRY_AFTER_S


def test_a_compressed_schedule_for_tests_parses_and_bad_ones_do_not() -> None:
    assert parse_schedule("0, 0.05,0.2") == (0.0, 0.05, 0.2)
    for bad in ("", ",", "a,b", "0,-1", "0,nan"):
        with pytest.raises(ValueError):
            parse_schedule(bad)
