"""The rate limit per tenant: ``api_rate_per_minute`` requests in any 60 s, per server process.

A moving window (``limits``), kept in memory: each API process counts on its own, so the
rate across ``n`` processes is up to ``n`` times the setting. Over it: ``429 rate_limited``
with ``Retry-After``, the seconds until the oldest request in the window leaves it.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from streams.api.problems import ApiProblem


class RateLimit:
    """``per_minute`` requests per tenant in any 60 s; ``0`` counts nothing."""

    def __init__(self, per_minute: int) -> None:
        self.item = RateLimitItemPerMinute(per_minute) if per_minute > 0 else None
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    def hit(self, tenant: str) -> None:
        if self.item is None or self.limiter.hit(self.item, tenant):
            return
        reset, _ = self.limiter.get_window_stats(self.item, tenant)
        retry_after = max(1, math.ceil(reset - time.time()))
        raise ApiProblem(
            "rate_limited",
            f"over {self.item.amount} requests per minute for this tenant; retry in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )
