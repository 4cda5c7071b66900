"""The one retry policy: retryable darkroom errors are retried with capped exponential backoff."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

import structlog

from processors.errors import RetryableError

T = TypeVar("T")
_log = structlog.get_logger("darkroom.retry")


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

    Permanent errors pass straight through: retrying cannot fix them. Jitter keeps a
    fleet of workers from hammering a recovering service in lockstep.
    """
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except RetryableError as exc:
            if attempt == attempts:
                raise
            delay = min(max_backoff_s, backoff_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
            _log.warning("retrying", what=what, attempt=attempt, error_code=exc.code, delay_s=round(delay, 3))
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
