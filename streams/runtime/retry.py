"""The one backoff policy: capped exponential backoff, jittered, for every retry and restart.

``backoff_delay`` is the rule; ``Backoff`` counts failures in a row for loops that wait
between tries (a paused worker, a restarted service, a crashed child process); ``retry``
retries one call on retryable darkroom errors. Webhook attempts follow the Standard
Webhooks schedule instead (``streams.sinks.webhooks``), which the spec fixes.
"""

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


class Backoff:
    """Failures in a row, and the wait after each: ``backoff_delay`` of their count."""

    def __init__(self, first_s: float, max_s: float) -> None:
        self.first_s, self.max_s = first_s, max_s
        self.failures = 0

    def next(self) -> float:
        """One more failure: how long to wait before the next try."""
        self.failures += 1
        return backoff_delay(self.failures, self.first_s, self.max_s)

    def reset(self) -> None:
        """A try succeeded (or ran long enough to count as well): start from ``first_s`` again."""
        self.failures = 0


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
