"""Webhook outbox and dispatcher: durable, retried, one webhook-id per event.

The result writer queues deliveries in the same transaction as the result
(``enqueue``), one row per (event id, target): the per-upload callback URL and every
active subscription of the tenant that wants the event type. The dispatcher claims due
rows, sends them (``streams.sinks.webhooks``: signed, SSRF-checked, no redirects) with bounded
concurrency per target host, and records the outcome. All state is in the database, so
a dispatcher killed at any moment resumes where it stopped; a delivery that reached the
receiver but was not yet recorded is sent again with the same ``webhook-id``.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import structlog

from processors.errors import DatabaseUnavailable
from streams.config import Settings
from streams.runtime.retry import backoff_delay
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
            "INSERT INTO webhook_deliveries (webhook_id, target, url, image_id, event_type, payload, status,"
            " attempts, next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?)"
            " ON CONFLICT (webhook_id, target) DO NOTHING",
            (event["event_id"], target, url, event["image_id"], event_type, payload, now, now),
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


class Dispatcher:
    """Sends due deliveries until stopped. Several dispatchers may share one database."""

    name = "webhook-dispatcher"

    def __init__(self, settings: Settings, db: Database, *, concurrency: int = 8, poll_s: float = 0.2) -> None:
        self.settings = settings
        self.db = db
        self.concurrency = concurrency
        self.poll_s = poll_s
        self.config = webhooks.WebhookConfig.from_settings(settings)
        self.guard = self.config.guard()
        self.limiter = self.config.limiter()
        self._rng = random.Random()
        self._lease_ms = int((self.config.timeout_s * 2 + 5) * 1000)  # after a crash, due again

    def run(self, stop: threading.Event) -> None:
        with (
            ThreadPoolExecutor(self.concurrency, thread_name_prefix="webhook") as pool,
            webhooks.new_client(timeout_s=self.config.timeout_s) as client,
        ):
            _log.info("dispatcher started")
            outages = 0
            while not stop.is_set():
                try:
                    claimed = self._claim(self.concurrency * 2)
                except DatabaseUnavailable as exc:  # wait for the database; nothing is lost meanwhile
                    outages += 1
                    delay = backoff_delay(outages, self.settings.retry_backoff_s, self.settings.retry_max_backoff_s)
                    _log.warning("database unavailable; will retry", error=exc.message, delay_s=round(delay, 2))
                    stop.wait(delay)
                    continue
                outages = 0
                for row in claimed:
                    host = urlsplit(row["url"]).hostname or ""
                    if self.limiter.try_acquire(host):
                        pool.submit(self._attempt, row, host, client)
                    else:  # this target is saturated; others go ahead
                        self._reschedule(row, now_ms() + int(self.poll_s * 1000))
                if not claimed:
                    stop.wait(self.poll_s)
            _log.info("dispatcher stopping; waiting for attempts in flight")

    def _claim(self, limit: int) -> list[Row]:
        """Take due rows by pushing their next attempt past a lease (no double sends)."""
        now = now_ms()
        with self.db.transaction() as tx:
            return tx.query(
                "UPDATE webhook_deliveries SET next_attempt_at = ?"
                " WHERE status = 'pending' AND next_attempt_at <= ? AND (webhook_id, target) IN"
                " (SELECT webhook_id, target FROM webhook_deliveries WHERE status = 'pending'"
                "  AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?)"
                " RETURNING webhook_id, target, url, image_id, payload, attempts",
                (now + self._lease_ms, now, now, limit),
            )

    def _reschedule(self, row: Row, at_ms: int) -> None:
        with self.db.transaction() as tx:
            tx.execute(
                "UPDATE webhook_deliveries SET next_attempt_at = ? WHERE webhook_id = ? AND target = ?",
                (at_ms, row["webhook_id"], row["target"]),
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

    def _attempt(self, row: Row, host: str, client: webhooks.httpx2.Client) -> None:
        log = _log.bind(webhook_id=row["webhook_id"], target=row["target"], image_id=row["image_id"])
        try:
            keys = self._secrets(row["target"])
            if keys is None:
                self._finish(row, "disabled", row["attempts"], None, "subscription disabled")
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
            if result.delivered:
                self._finish(row, "delivered", attempts, result.status_code, None)
                log.info("webhook delivered", attempts=attempts, status_code=result.status_code)
            elif result.disable:
                self._finish(row, "disabled", attempts, result.status_code, result.error)
                self._disable_subscription(row["target"], f"{row['url']} answered 410 Gone")
                log.warning("webhook target gone; disabled", status_code=result.status_code)
            else:
                delay = (
                    webhooks.next_delay(attempts, self.config.schedule, result.retry_after_s, self._rng)
                    if result.retryable
                    else None
                )
                if delay is None:
                    self._finish(row, "exhausted", attempts, result.status_code, result.error)
                    log.warning("webhook exhausted", attempts=attempts, error=result.error)
                else:
                    self._retry_later(row, attempts, result.status_code, result.error, delay)
                    log.info("webhook attempt failed", attempts=attempts, error=result.error, retry_in_s=delay)
        except Exception:  # the row stays claimed until its lease ends, then is retried
            log.exception("webhook attempt crashed")
        finally:
            self.limiter.release(host)

    def _finish(self, row: Row, status: str, attempts: int, code: int | None, error: str | None) -> None:
        with self.db.transaction() as tx:
            tx.execute(
                "UPDATE webhook_deliveries SET status = ?, attempts = ?, last_status_code = ?, last_error = ?,"
                " delivered_at = ? WHERE webhook_id = ? AND target = ?",
                (
                    status,
                    attempts,
                    code,
                    error,
                    now_ms() if status == "delivered" else None,
                    row["webhook_id"],
                    row["target"],
                ),
            )

    def _retry_later(self, row: Row, attempts: int, code: int | None, error: str | None, delay_s: float) -> None:
        with self.db.transaction() as tx:
            tx.execute(
                "UPDATE webhook_deliveries SET attempts = ?, last_status_code = ?, last_error = ?,"
                " next_attempt_at = ? WHERE webhook_id = ? AND target = ?",
                (attempts, code, error, now_ms() + int(delay_s * 1000), row["webhook_id"], row["target"]),
            )

    def _disable_subscription(self, target: str, reason: str) -> None:
        if target == CALLBACK:
            return
        with self.db.transaction() as tx:
            tx.execute(
                "UPDATE webhook_subscriptions SET active = ?, disabled_reason = ? WHERE id = ?",
                (False, reason, target),
            )
