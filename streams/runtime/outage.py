"""What a loop does while a dependency is down: wait with backoff, and say so.

One place for the bookkeeping of a pause, shared by the worker loop and the webhook
dispatcher: the backoff between tries (``retry.Backoff``), the pause metrics per
dependency, the loop's health (not ready, with the reason; still healthy), and the lines
an operator reads — one warning per try (error level for refused credentials), at least
one a minute while a long wait lasts, and one when work resumes, each with how long the
pause has lasted.
"""

from __future__ import annotations

import time
from typing import Any

from processors.errors import DarkroomError
from streams.config import Settings
from streams.errors import AccessRefused
from streams.observe import metrics
from streams.observe.health import LoopState
from streams.runtime.retry import Backoff

STILL_PAUSED_EVERY_S = 60.0
"""A pause says at least this often, at warning level, what it waits for."""


class Outage:
    """The pause of one loop (``name`` as its metrics and health call it)."""

    def __init__(self, name: str, settings: Settings, log: Any) -> None:
        self.name, self.log = name, log
        self.backoff = Backoff(settings.retry_backoff_s, settings.retry_max_backoff_s)
        self.health: LoopState | None = None
        self.since: float | None = None
        """When the waits in a row began (None: not paused)."""
        self._on: set[str] = set()
        self._error: DarkroomError | None = None
        self._said = 0.0

    @property
    def waits(self) -> int:
        return self.backoff.failures

    def begins(self, exc: DarkroomError) -> float:
        """Another try met the outage ``exc``: record it, say so, return how long to wait."""
        delay = self.backoff.next()
        dependency = metrics.dependency_of(exc.code)
        metrics.PAUSES.labels(self.name, dependency).inc()
        metrics.PAUSED.labels(self.name, dependency).set(1)
        self._on.add(dependency)
        if self.health is not None:
            self.health.paused = f"{exc.code}: {exc.message}"
        now = time.monotonic()
        self.since = self.since if self.since is not None else now
        self._error, self._said = exc, now
        self._say("dependency unavailable; paused, will retry", delay_s=round(delay, 2))
        return delay

    def waiting(self, left_s: float) -> None:
        """Called as a long wait goes on: a line at least every ``STILL_PAUSED_EVERY_S``."""
        now = time.monotonic()
        if self._error is not None and now - self._said >= STILL_PAUSED_EVERY_S:
            self._said = now
            self._say("still paused", retry_in_s=round(left_s))

    def over(self, *, stopping: bool = False) -> None:
        """Work went through again (or, ``stopping``, the loop ends): no longer paused."""
        self.backoff.reset()
        if self.since is not None and not stopping:
            self.log.info("resumed after an outage", paused_s=round(time.monotonic() - self.since, 1))
        self.since, self._error = None, None
        if self.health is not None:
            self.health.paused = None
        for dependency in self._on:
            metrics.PAUSED.labels(self.name, dependency).set(0)
        self._on.clear()

    def _say(self, event: str, **fields: Any) -> None:
        exc = self._error
        assert exc is not None and self.since is not None
        level = "error" if isinstance(exc, AccessRefused) else "warning"
        getattr(self.log, level)(
            event,
            error_code=exc.code,
            error=exc.message,
            waits=self.waits,
            paused_s=round(time.monotonic() - self.since),
            **fields,
        )
