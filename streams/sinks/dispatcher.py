"""The webhook dispatcher: durable, retried, one webhook-id per event.

The result writer queues deliveries in the outbox (``streams.sinks.outbox``) in the same
transaction as the result. The dispatcher claims due rows, sends them
(``streams.sinks.webhooks``: signed, SSRF-checked, no redirects) with bounded concurrency
per target (``webhooks.target_key``), and records the outcome; every SQL statement is the
outbox's. All state is in the database, so a dispatcher killed at any moment resumes where
it stopped; a delivery that reached the receiver but was not yet recorded is sent again
with the same ``webhook-id``.

Claims are leases: a claimed row is due again ``webhook_lease_s`` after its dispatcher
last renewed it. A dispatcher claims only what it can start at once (a free worker and a
free, unthrottled slot of the row's target), renews the leases of everything it holds in
one transaction, and records an outcome only while it still holds the row, so a row is
sent again only after its dispatcher stopped renewing it (it died or lost the database).
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import httpx2
import structlog

from processors.errors import ConfigurationError
from streams.config import Settings, mask_url
from streams.errors import DatabaseUnavailable
from streams.observe import metrics
from streams.observe.health import HEALTH
from streams.runtime.egress import EgressGuard
from streams.runtime.outage import Outage
from streams.sinks import webhooks
from streams.sinks.database import Database, Row, now_ms
from streams.sinks.outbox import CALLBACK, Key, Outbox, key_of

_log = structlog.get_logger("darkroom.webhooks")


class Dispatcher:
    """Sends due deliveries until stopped. Several dispatchers may share one database."""

    name = "webhook-dispatcher"

    def __init__(self, settings: Settings, db: Database, *, concurrency: int = 8, poll_s: float = 0.2) -> None:
        if not settings.webhook_lease_s > 0:
            raise ConfigurationError("invalid configuration: DARKROOM_WEBHOOK_LEASE_S: must be > 0")
        self.settings = settings
        self.db = db
        self.outbox = Outbox(db)
        self.concurrency = concurrency
        self.poll_s = poll_s
        self.guard = EgressGuard.from_settings(settings)
        self.limiter = webhooks.TargetLimiter(settings.webhook_max_in_flight_per_host)
        self.secrets = webhooks.secrets_from(settings)
        """Sign the per-upload callbacks; a subscription signs with its own secret."""
        self.owner = uuid.uuid4().hex
        """Written to ``claimed_by``: outcomes and renewals apply only to rows still claimed by it."""
        self._rng = random.Random()
        self._lease_ms = int(settings.webhook_lease_s * 1000)
        self._lock = threading.Lock()
        self._running: dict[Key, int | None] = {}
        """Rows with an attempt in flight → when their lease ends (epoch ms); None when no longer renewed
        (the lease was lost, or the outcome is being recorded)."""
        self._wake = threading.Event()
        """Set when an attempt ends: a worker and a target slot may be free."""

    def run(self, stop: threading.Event) -> None:
        with (
            ThreadPoolExecutor(self.concurrency, thread_name_prefix="webhook") as pool,
            webhooks.new_client(timeout_s=self.settings.webhook_timeout_s) as client,
        ):
            _log.info("dispatcher started", owner=self.owner, lease_s=self.settings.webhook_lease_s)
            outage = Outage("webhooks", self.settings, _log)
            health = outage.health = HEALTH.register("webhooks")
            health.assigned(0, busy=False)  # no consumer group: ready once it runs
            try:
                while not stop.is_set() or self._running:  # once stopped, keep the leases until attempts end
                    self._wake.clear()
                    health.progressed()
                    try:
                        self._renew()
                        if not stop.is_set():
                            for row in self._claim():
                                pool.submit(self._attempt, row, client)
                    except DatabaseUnavailable as exc:  # wait for the database; nothing is lost meanwhile
                        delay = outage.begins(exc)
                        (self._wake if stop.is_set() else stop).wait(delay)  # stopping: until an attempt ends
                        continue
                    outage.over()
                    self._wake.wait(self._next_wait_s())
            finally:
                outage.over(stopping=True)
                HEALTH.unregister(health)
            _log.info("dispatcher stopped")

    def _next_wait_s(self) -> float:
        """Until the next poll, or sooner when a lease needs renewing."""
        with self._lock:
            leases = [until for until in self._running.values() if until is not None]
        if not leases:
            return self.poll_s
        renew_in_s = (min(leases) - self._lease_ms / 2 - now_ms()) / 1000
        return max(0.0, min(self.poll_s, renew_in_s))

    def _claim(self) -> list[Row]:
        """Claim the due rows that can start now, and only those: the rest stay untouched.

        Candidates skip the targets the limiter refuses and take at most a full target's
        worth of rows per target; here each one takes a worker and a target slot if both
        are free, and the conditional UPDATE takes exactly those rows that are still due,
        so two dispatchers never both claim a row.
        """
        with self._lock:
            free = self.concurrency - len(self._running)
            running = set(self._running)
        if free <= 0:
            return []
        acquired: dict[Key, str] = {}

        def take(candidates: list[Row]) -> list[Key]:
            for row in candidates:
                key = row["target_key"] or webhooks.target_key(row["url"])  # NULL: queued before 0002
                if len(acquired) < free and key_of(row) not in running and self.limiter.try_acquire(key):
                    acquired[key_of(row)] = key
            return list(acquired)

        now = now_ms()
        try:
            claimed = self.outbox.claim(
                self.owner,
                now=now,
                until=now + self._lease_ms,
                closed=self.limiter.closed(),
                per_target=self.limiter.max_in_flight_per_host,
                limit=self.concurrency,
                take=take,
            )
        except BaseException:
            for key in acquired.values():
                self.limiter.release(key)
            raise
        for row in claimed:
            row["target_key"] = acquired.pop(key_of(row))
        for key in acquired.values():  # claimed meanwhile by another dispatcher
            self.limiter.release(key)
        with self._lock:
            self._running.update((key_of(row), now + self._lease_ms) for row in claimed)
        return claimed

    def _renew(self) -> None:
        """Extend every lease held, in one transaction, once the first is within half a lease of its end."""
        now = now_ms()
        with self._lock:
            leases = {key: until for key, until in self._running.items() if until is not None}
        if not leases or min(leases.values()) - now > self._lease_ms / 2:
            return
        held = list(leases)
        renewed = self.outbox.renew(self.owner, held, until=now + self._lease_ms)
        with self._lock:
            lost = [key for key in held if self._running.get(key) is not None and key not in renewed]  # not ending
            self._running.update({key: now + self._lease_ms for key in renewed if key in self._running})
            self._running.update(dict.fromkeys(lost))
        for webhook_id, target in lost:
            _log.warning(
                "webhook lease lost; its outcome is left to the new holder", webhook_id=webhook_id, target=target
            )

    def _secrets(self, target: str) -> Sequence[webhooks.WebhookSecret | str] | None:
        """Signing secrets for the target; None if its subscription was disabled meanwhile."""
        if target == CALLBACK:
            return self.secrets
        secret = self.outbox.subscription_secret(target)
        return None if secret is None else [secret]

    def _attempt(self, row: Row, client: httpx2.Client) -> None:
        log = _log.bind(webhook_id=row["webhook_id"], target=row["target"], image_id=row["image_id"])
        try:
            keys = self._secrets(row["target"])
            if keys is None:
                recorded = self._finish(row, "disabled", row["attempts"], None, "subscription disabled")
                metrics.WEBHOOK_ATTEMPTS.labels("disabled" if recorded else "lost").inc()
                return
            result = webhooks.send(
                row["url"],
                row["webhook_id"],
                row["payload"].encode(),
                keys,
                timeout_s=self.settings.webhook_timeout_s,
                guard=self.guard,
                client=client,
            )
            attempts = row["attempts"] + 1
            if result.throttle:
                paused_s = self.limiter.throttle(row["target_key"], result.retry_after_s)
                log.info("webhook target throttled", status_code=result.status_code, paused_s=paused_s)
            outcome = "lost"  # unless recorded below: the lease went to another dispatcher
            if result.delivered:
                if self._finish(row, "delivered", attempts, result.status_code, None):
                    outcome = "delivered"
                    log.info("webhook delivered", attempts=attempts, status_code=result.status_code)
            elif result.disable:
                if self._finish(row, "disabled", attempts, result.status_code, result.error):
                    outcome = "disabled"
                    self._disable_subscription(row["target"], f"{mask_url(row['url'])} answered 410 Gone")
                    log.warning("webhook target gone; disabled", status_code=result.status_code)
            else:
                delay = (
                    webhooks.next_delay(attempts, self.settings.webhook_schedule, result.retry_after_s, self._rng)
                    if result.retryable
                    else None
                )
                if delay is None:
                    if self._finish(row, "exhausted", attempts, result.status_code, result.error):
                        outcome = "exhausted"
                        log.warning("webhook exhausted", attempts=attempts, error=result.error)
                elif self._retry_later(row, attempts, result.status_code, result.error, delay):
                    outcome = "retry"
                    log.info("webhook attempt failed", attempts=attempts, error=result.error, retry_in_s=delay)
            metrics.WEBHOOK_ATTEMPTS.labels(outcome).inc()
        except Exception:  # the row stays claimed until its lease ends, then is retried
            metrics.WEBHOOK_ATTEMPTS.labels("crashed").inc()
            log.exception("webhook attempt crashed")
        finally:
            with self._lock:
                del self._running[key_of(row)]
            self.limiter.release(row["target_key"])
            self._wake.set()

    def _stop_renewing(self, row: Row) -> None:
        """Its outcome is about to end the lease: a renewal meanwhile would find it gone and call it lost."""
        with self._lock:
            self._running[key_of(row)] = None

    def _finish(self, row: Row, status: str, attempts: int, code: int | None, error: str | None) -> bool:
        """Record a final outcome; False (and nothing written) if this dispatcher lost the row's lease."""
        self._stop_renewing(row)
        return self._applied(row, self.outbox.finish(self.owner, key_of(row), status, attempts, code, error))

    def _retry_later(self, row: Row, attempts: int, code: int | None, error: str | None, delay_s: float) -> bool:
        """Schedule the next attempt and let go of the row; False if this dispatcher lost its lease."""
        self._stop_renewing(row)
        return self._applied(row, self.outbox.retry_later(self.owner, key_of(row), attempts, code, error, delay_s))

    def _applied(self, row: Row, changed: bool) -> bool:
        if not changed:
            _log.warning(
                "webhook lease lost before its outcome was recorded; left to the new holder",
                webhook_id=row["webhook_id"],
                target=row["target"],
            )
        return changed

    def _disable_subscription(self, target: str, reason: str) -> None:
        if target != CALLBACK:
            self.outbox.disable_subscription(target, reason)
