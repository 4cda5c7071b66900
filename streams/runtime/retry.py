"""The one retry policy: retryable darkroom errors are retried with capped exponential backoff."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

import structlog

from processors.errors import RetryableError
from streams.observe import metrics

T = TypeVar("T")
_log = structlog.get_logger("darkroom.retry")


def backoff_delay(attempt: int, first_s: float, max_s: float) -> float:
    """The wait before try ``attempt + 1``: doubling from ``first_s``, capped, jittered to 50–100 %.

    Jitter keeps a fleet of workers from hammering a recovering service in lockstep.
    """
    return min(max_s, first_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)


def retry(
    fn: Callable[[], T],
    *,
    attempts: int,
    backoff_s: float,
    max_backoff_s: float = 30.0,
    what: str = "call",
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn`` until it succeeds, re-raising the last ``RetryableError`` after ``attempts``.

    Permanent errors pass straight through: retrying cannot fix them.
    """
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except RetryableError as exc:
            if attempt == attempts:
                raise
            delay = backoff_delay(attempt, backoff_s, max_backoff_s)
            metrics.RETRIES.labels(metrics.dependency_of(exc.code)).inc()
            _log.warning("retrying", what=what, attempt=attempt, error_code=exc.code, delay_s=round(delay, 3))
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
