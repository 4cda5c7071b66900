"""Webhook outbox and dispatcher: durable, retried, one webhook-id per event.

The result writer queues deliveries in the same transaction as the result
(``enqueue``), one row per (event id, target): the per-upload callback URL and every
active subscription of the tenant that wants the event type. The dispatcher claims due
rows, sends them (``streams.sinks.webhooks``: signed, SSRF-checked, no redirects) with bounded
concurrency per target (``webhooks.target_key``), and records the outcome. All state is in
the database, so a dispatcher killed at any moment resumes where it stopped; a delivery
that reached the receiver but was not yet recorded is sent again with the same ``webhook-id``.

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
from typing import Any

import structlog

from processors.errors import ConfigurationError, DatabaseUnavailable
from streams.config import Settings, mask_url
from streams.observe import metrics
from streams.observe.health import HEALTH
from streams.runtime.outage import Outage
from streams.sinks import webhooks
from streams.sinks.database import Database, Row, Transaction, now_ms
from streams.wire.events import Event, FinalStatus

CALLBACK = "callback"
_log = structlog.get_logger("darkroom.webhooks")


def enqueue(tx: Transaction, status: FinalStatus, event: Event) -> None:
    """Queue this final event's webhooks; a replayed event queues nothing new."""
    event_type = f"image.{status}"
    payload = webhooks.payload_for(event, status).decode()
    targets: list[tuple[str, str]] = []
    if event.get("callback_url"):
        targets.append((CALLBACK, event["callback_url"]))
    if event.get("tenant"):
        for sub in tx.query(
            "SELECT id, url, event_types FROM webhook_subscriptions WHERE tenant = ? AND active = ?",
            (event["tenant"], True),
        ):
            if event_type in sub["event_types"].split(","):
                targets.append((sub["id"], sub["url"]))
    now = now_ms()
    for target, url in targets:
        tx.execute(
            "INSERT INTO webhook_deliveries (webhook_id, target, url, target_key, image_id, event_type, payload,"
            " status, attempts, next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?)"
            " ON CONFLICT (webhook_id, target) DO NOTHING",
            (
                event["event_id"],
                target,
                url,
                webhooks.target_key(url),
                event["image_id"],
                event_type,
                payload,
                now,
                now,
            ),
        )


def subscribe(db: Database, tenant: str, url: str, event_types: list[str]) -> tuple[str, str]:
    """Add a tenant subscription; return its id and its new ``whsec_`` secret (shown once)."""
    sub_id = f"sub_{uuid.uuid4().hex[:16]}"
    secret = webhooks.new_secret()
    with db.transaction() as tx:
        tx.execute(
            "INSERT INTO webhook_subscriptions (id, tenant, url, secret, event_types, active, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (sub_id, tenant, url, secret, ",".join(event_types), True, now_ms()),
        )
    return sub_id, secret


def deliveries(db: Database, *, image_id: str | None = None, status: str | None = None) -> list[Row]:
    clauses, params = [], []
    if image_id:
        clauses.append("image_id = ?")
        params.append(image_id)
    if status:
        clauses.append("status = ?")
        params.append(status)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    with db.transaction() as tx:
        return tx.query(
            "SELECT webhook_id, target, url, image_id, event_type, status, attempts, next_attempt_at,"
            f" last_status_code, last_error, created_at, delivered_at FROM webhook_deliveries{where}"
            " ORDER BY created_at",
            params,
        )


def redeliver(db: Database, webhook_ids: list[str] | None = None) -> int:
    """Re-drive exhausted deliveries (all, or those of ``webhook_ids``) from attempt zero."""
    sql = (
        "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_attempt_at = ? WHERE status = 'exhausted'"
    )
    params: list[Any] = [now_ms()]
    if webhook_ids:
        sql += f" AND webhook_id IN ({', '.join('?' for _ in webhook_ids)})"
        params += webhook_ids
    with db.transaction() as tx:
        return tx.execute(sql, params)


_MAX_EXCLUDED = 200
"""Closed targets left out of the claim's SQL (a bounded parameter list); the limiter still
refuses any others that come up among the candidates."""
Key = tuple[str, str]
"""A delivery's primary key: (webhook id, target)."""


def _key(row: Row) -> Key:
    return row["webhook_id"], row["target"]


def _pairs(keys: Sequence[Key]) -> tuple[str, list[str]]:
    """``(webhook_id, target) IN (…)`` for ``keys`` and its parameters (both engines take VALUES)."""
    return (
        f"(webhook_id, target) IN (VALUES {', '.join('(?, ?)' for _ in keys)})",
        [part for key in keys for part in key],
    )


class Dispatcher:
    """Sends due deliveries until stopped. Several dispatchers may share one database."""

    name = "webhook-dispatcher"

    def __init__(self, settings: Settings, db: Database, *, concurrency: int = 8, poll_s: float = 0.2) -> None:
        if not settings.webhook_lease_s > 0:
            raise ConfigurationError("invalid configuration: DARKROOM_WEBHOOK_LEASE_S: must be > 0")
        self.settings = settings
        self.db = db
        self.concurrency = concurrency
        self.poll_s = poll_s
        self.config = webhooks.WebhookConfig.from_settings(settings)
        self.guard = self.config.guard()
        self.limiter = self.config.limiter()
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
            webhooks.new_client(timeout_s=self.config.timeout_s) as client,
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
        closed = sorted(self.limiter.closed())[:_MAX_EXCLUDED]
        skip = f" AND (target_key IS NULL OR target_key NOT IN ({', '.join('?' for _ in closed)}))" if closed else ""
        acquired: dict[Key, str] = {}
        now = now_ms()
        try:
            with self.db.transaction() as tx:
                candidates = tx.query(
                    "SELECT webhook_id, target, url, target_key FROM (SELECT webhook_id, target, url, target_key,"
                    " next_attempt_at, ROW_NUMBER() OVER (PARTITION BY COALESCE(target_key, url)"
                    " ORDER BY next_attempt_at) AS nth FROM webhook_deliveries"
                    f" WHERE status = 'pending' AND next_attempt_at <= ?{skip}) due"
                    " WHERE nth <= ? ORDER BY next_attempt_at LIMIT ?",
                    (now, *closed, self.limiter.max_in_flight_per_host, self.concurrency),
                )
                for row in candidates:
                    key = row["target_key"] or webhooks.target_key(row["url"])  # NULL: queued before 0002
                    if len(acquired) < free and _key(row) not in running and self.limiter.try_acquire(key):
                        acquired[_key(row)] = key
                if not acquired:
                    return []
                where, params = _pairs(list(acquired))
                claimed = tx.query(
                    "UPDATE webhook_deliveries SET next_attempt_at = ?, claimed_by = ?"
                    f" WHERE status = 'pending' AND next_attempt_at <= ? AND {where}"
                    " RETURNING webhook_id, target, url, image_id, payload, attempts",
                    (now + self._lease_ms, self.owner, now, *params),
                )
        except BaseException:
            for key in acquired.values():
                self.limiter.release(key)
            raise
        for row in claimed:
            row["target_key"] = acquired.pop(_key(row))
        for key in acquired.values():  # claimed meanwhile by another dispatcher
            self.limiter.release(key)
        with self._lock:
            self._running.update((_key(row), now + self._lease_ms) for row in claimed)
        return claimed

    def _renew(self) -> None:
        """Extend every lease held, in one transaction, once the first is within half a lease of its end."""
        now = now_ms()
        with self._lock:
            leases = {key: until for key, until in self._running.items() if until is not None}
        if not leases or min(leases.values()) - now > self._lease_ms / 2:
            return
        held = list(leases)
        where, params = _pairs(held)
        with self.db.transaction() as tx:
            kept = tx.query(
                "UPDATE webhook_deliveries SET next_attempt_at = ?"
                f" WHERE status = 'pending' AND claimed_by = ? AND {where} RETURNING webhook_id, target",
                (now + self._lease_ms, self.owner, *params),
            )
        renewed = {_key(row) for row in kept}
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
            return self.config.secrets
        with self.db.transaction() as tx:
            rows = tx.query("SELECT secret, active FROM webhook_subscriptions WHERE id = ?", (target,))
        if not rows or not rows[0]["active"]:
            return None
        return [rows[0]["secret"]]

    def _attempt(self, row: Row, client: webhooks.httpx2.Client) -> None:
        log = _log.bind(webhook_id=row["webhook_id"], target=row["target"], image_id=row["image_id"])
        try:
            keys = self._secrets(row["target"])
            if keys is None:
                self._finish(row, "disabled", row["attempts"], None, "subscription disabled")
                metrics.WEBHOOK_ATTEMPTS.labels("disabled").inc()
                return
            result = webhooks.send(
                row["url"],
                row["webhook_id"],
                row["payload"].encode(),
                keys,
                timeout_s=self.config.timeout_s,
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
                    webhooks.next_delay(attempts, self.config.schedule, result.retry_after_s, self._rng)
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
                del self._running[_key(row)]
            self.limiter.release(row["target_key"])
            self._wake.set()

    def _stop_renewing(self, row: Row) -> None:
        """Its outcome is about to end the lease: a renewal meanwhile would find it gone and call it lost."""
        with self._lock:
            self._running[_key(row)] = None

    def _finish(self, row: Row, status: str, attempts: int, code: int | None, error: str | None) -> bool:
        """Record a final outcome; False (and nothing written) if this dispatcher lost the row's lease."""
        self._stop_renewing(row)
        with self.db.transaction() as tx:
            changed = tx.execute(
                "UPDATE webhook_deliveries SET status = ?, attempts = ?, last_status_code = ?, last_error = ?,"
                " delivered_at = ?, claimed_by = NULL WHERE webhook_id = ? AND target = ? AND claimed_by = ?"
                " AND status = 'pending'",
                (
                    status,
                    attempts,
                    code,
                    error,
                    now_ms() if status == "delivered" else None,
                    row["webhook_id"],
                    row["target"],
                    self.owner,
                ),
            )
        return self._applied(row, changed)

    def _retry_later(self, row: Row, attempts: int, code: int | None, error: str | None, delay_s: float) -> bool:
        """Schedule the next attempt and let go of the row; False if this dispatcher lost its lease."""
        self._stop_renewing(row)
        with self.db.transaction() as tx:
            changed = tx.execute(
                "UPDATE webhook_deliveries SET attempts = ?, last_status_code = ?, last_error = ?,"
                " next_attempt_at = ?, claimed_by = NULL WHERE webhook_id = ? AND target = ? AND claimed_by = ?"
                " AND status = 'pending'",
                (attempts, code, error, now_ms() + int(delay_s * 1000), row["webhook_id"], row["target"], self.owner),
            )
        return self._applied(row, changed)

    def _applied(self, row: Row, changed: int) -> bool:
        if not changed:
            _log.warning(
                "webhook lease lost before its outcome was recorded; left to the new holder",
                webhook_id=row["webhook_id"],
                target=row["target"],
            )
        return bool(changed)

    def _disable_subscription(self, target: str, reason: str) -> None:
        if target == CALLBACK:
            return
        with self.db.transaction() as tx:
            tx.execute(
                "UPDATE webhook_subscriptions SET active = ?, disabled_reason = ? WHERE id = ?",
                (False, reason, target),
            )
