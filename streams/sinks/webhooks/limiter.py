"""Per-target concurrency for the dispatcher: attempts in flight and throttles, by ``host:port``.

A receiver that answered 429, 502 or 504 is throttled for its ``Retry-After`` (capped like
a retry's wait) or, without one, for ``THROTTLE_COOLDOWN_S``, while the other targets go on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from streams.errors import InvalidWebhookUrl
from streams.runtime.egress import parse_target
from streams.sinks.webhooks.schedule import capped_retry_after

THROTTLE_COOLDOWN_S = 5.0
"""How long a target that answered 429/502/504 without ``Retry-After`` gets no new attempt."""


def target_key(url: str) -> str:
    """What ``TargetLimiter`` counts by: ``host:port`` of the URL, lower-cased."""
    try:
        parsed = parse_target(url)
    except InvalidWebhookUrl:  # never sent anywhere; one key for all, and no URL (or its token) in it
        return "invalid-url"
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return f"{parsed.raw_host.decode('ascii').lower()}:{port}"


class TargetLimiter:
    """At most ``max_in_flight_per_host`` attempts in flight per target, none while it is throttled; thread-safe.

    Keys are ``target_key``. The dispatcher claims only deliveries whose target has a free
    slot (``try_acquire``) and leaves the others in the database untouched (``closed``), so
    one slow, dead or throttled subscriber holds at most its own slots and never the
    others' deliveries. Per process: each dispatcher counts its own attempts.
    """

    def __init__(self, max_in_flight_per_host: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if max_in_flight_per_host < 1:
            raise ValueError("max_in_flight_per_host must be >= 1")
        self.max_in_flight_per_host = max_in_flight_per_host
        self._clock = clock
        self._in_flight: dict[str, int] = {}
        self._throttled_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def try_acquire(self, key: str) -> bool:
        with self._lock:
            count = self._in_flight.get(key, 0)
            if count >= self.max_in_flight_per_host or self._throttled(key):
                return False
            self._in_flight[key] = count + 1
            return True

    def release(self, key: str) -> None:
        with self._lock:
            count = self._in_flight.get(key, 0)
            if count <= 0:
                raise RuntimeError(f"release without acquire for {key}")
            if count == 1:
                del self._in_flight[key]
            else:
                self._in_flight[key] = count - 1

    def in_flight(self, key: str) -> int:
        with self._lock:
            return self._in_flight.get(key, 0)

    def throttle(self, key: str, retry_after_s: float | None) -> float:
        """No new attempt for ``key`` during its ``Retry-After`` (capped), else ``THROTTLE_COOLDOWN_S``.

        Returns the seconds it waits. A shorter request never cuts a longer throttle short.
        """
        seconds = THROTTLE_COOLDOWN_S if retry_after_s is None else capped_retry_after(retry_after_s)
        with self._lock:
            until = self._clock() + seconds
            self._throttled_until[key] = max(until, self._throttled_until.get(key, until))
        return seconds

    def closed(self) -> set[str]:
        """The keys ``try_acquire`` refuses now (full or throttled): what not to claim."""
        with self._lock:
            full = {key for key, count in self._in_flight.items() if count >= self.max_in_flight_per_host}
            return full | {key for key in list(self._throttled_until) if self._throttled(key)}

    def _throttled(self, key: str) -> bool:
        """Whether ``key`` is throttled now; forgets a throttle that ended. Call under the lock."""
        until = self._throttled_until.get(key)
        if until is None:
            return False
        if self._clock() < until:
            return True
        del self._throttled_until[key]
        return False
