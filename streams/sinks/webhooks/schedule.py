"""When to try again: the retry schedule with jitter, and how long a ``Retry-After`` is honoured.

The dispatcher asks ``next_delay`` after each failed attempt; the schedule itself is the
``DARKROOM_WEBHOOK_SCHEDULE`` setting, passed in, so nothing here holds state but the
jitter's random source.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

JITTER = 0.2
"""Each scheduled delay is multiplied by a factor drawn from [1 - JITTER, 1 + JITTER]."""
MAX_RETRY_AFTER_S = 86_400.0
"""A receiver's ``Retry-After`` is honoured up to one day."""

_RNG = random.Random()


def capped_retry_after(retry_after_s: float) -> float:
    """How long a receiver's ``Retry-After`` is waited out: at least 0, at most ``MAX_RETRY_AFTER_S``."""
    return min(max(retry_after_s, 0.0), MAX_RETRY_AFTER_S)


def next_delay(
    attempts_made: int,
    schedule: Sequence[float],
    retry_after_s: float | None = None,
    rng: random.Random | None = None,
) -> float | None:
    """Seconds to wait before attempt ``attempts_made + 1``; None once the schedule is spent.

    The scheduled delay gets ±``JITTER`` (drawn from ``rng``, so a seeded rng gives the
    same answers), so receivers recovering from an outage are not hit in lockstep. A
    ``Retry-After`` makes the wait at least that long, capped at ``MAX_RETRY_AFTER_S``.
    """
    if attempts_made < 0:
        raise ValueError("attempts_made must be >= 0")
    if attempts_made >= len(schedule):
        return None
    delay = schedule[attempts_made] * (rng or _RNG).uniform(1 - JITTER, 1 + JITTER)
    if retry_after_s is not None:
        delay = max(delay, capped_retry_after(retry_after_s))
    return delay
