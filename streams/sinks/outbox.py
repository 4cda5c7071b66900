"""The webhook outbox: every SQL statement over ``webhook_deliveries`` and ``webhook_subscriptions``.

The result writer queues deliveries in the same transaction as the result (``enqueue``),
one row per (event id, target): the per-upload callback URL (target ``CALLBACK``) and
every active subscription of the tenant that wants the event type (target: its id). The
dispatcher (``streams.sinks.dispatcher``) claims, renews and settles rows through
``Outbox``; the CLI lists, subscribes and re-drives through it.

A row is ``pending`` until it is ``delivered``, ``exhausted`` or ``disabled``. A claim is
``claimed_by`` its dispatcher's owner id with ``next_attempt_at`` moved to the end of the
lease; renewals and outcomes apply only to rows still pending and claimed by that owner,
so a dispatcher that lost a lease changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from streams.runtime.worker import Event
from streams.sinks import webhooks
from streams.sinks.database import Database, Row, Transaction, now_ms
from streams.wire.events import FinalStatus

CALLBACK = "callback"
"""The target of an upload's own ``callback_url``; a subscription's target is its id."""
MAX_EXCLUDED = 200
"""Closed targets left out of the claim's SQL (a bounded parameter list); the limiter still
refuses any others that come up among the candidates."""
Key = tuple[str, str]
"""A delivery's primary key: (webhook id, target)."""


def key_of(row: Row) -> Key:
    return row["webhook_id"], row["target"]


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


def _pairs(keys: Sequence[Key]) -> tuple[str, list[str]]:
    """``(webhook_id, target) IN (…)`` for ``keys`` and its parameters (both engines take VALUES)."""
    return (
        f"(webhook_id, target) IN (VALUES {', '.join('(?, ?)' for _ in keys)})",
        [part for key in keys for part in key],
    )


class Outbox:
    """The outbox tables of one ``Database``; each method is one transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # --- operators: subscriptions and records ----------------------------------------

    def subscribe(self, tenant: str, url: str, event_types: list[str]) -> tuple[str, str]:
        """Add a tenant subscription; return its id and its new ``whsec_`` secret (shown once)."""
        sub_id = f"sub_{uuid.uuid4().hex[:16]}"
        secret = webhooks.new_secret()
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT INTO webhook_subscriptions (id, tenant, url, secret, event_types, active, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (sub_id, tenant, url, secret, ",".join(event_types), True, now_ms()),
            )
        return sub_id, secret

    def deliveries(self, *, image_id: str | None = None, status: str | None = None) -> list[Row]:
        """Delivery records, oldest first: all, or those of ``image_id`` and/or with ``status``."""
        clauses, params = [], []
        if image_id:
            clauses.append("image_id = ?")
            params.append(image_id)
        if status:
            clauses.append("status = ?")
            params.append(status)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self.db.transaction() as tx:
            return tx.query(
                "SELECT webhook_id, target, url, image_id, event_type, status, attempts, next_attempt_at,"
                f" last_status_code, last_error, created_at, delivered_at FROM webhook_deliveries{where}"
                " ORDER BY created_at",
                params,
            )

    def redeliver(self, webhook_ids: list[str] | None = None) -> int:
        """Re-drive exhausted deliveries (all, or those of ``webhook_ids``) from attempt zero."""
        sql = (
            "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_attempt_at = ?"
            " WHERE status = 'exhausted'"
        )
        params: list[Any] = [now_ms()]
        if webhook_ids:
            sql += f" AND webhook_id IN ({', '.join('?' for _ in webhook_ids)})"
            params += webhook_ids
        with self.db.transaction() as tx:
            return tx.execute(sql, params)

    # --- the dispatcher: leases and outcomes -----------------------------------------

    def claim(
        self,
        owner: str,
        *,
        now: int,
        until: int,
        closed: Iterable[str],
        per_target: int,
        limit: int,
        take: Callable[[list[Row]], Sequence[Key]],
    ) -> list[Row]:
        """Claim for ``owner``, until ``until`` (epoch ms), the due rows ``take`` picks; return those claimed.

        The candidates are at most ``limit`` rows due at ``now``, at most ``per_target`` per
        target, none of the ``closed`` target keys (the first ``MAX_EXCLUDED`` of them);
        ``take`` gets them and answers which to claim. The conditional UPDATE takes exactly
        those still due, in the same transaction, so two dispatchers never both claim a row.
        Rows queued before migration 0002 have no ``target_key`` (NULL).
        """
        excluded = sorted(closed)[:MAX_EXCLUDED]
        placeholders = ", ".join("?" for _ in excluded)
        skip = f" AND (target_key IS NULL OR target_key NOT IN ({placeholders}))" if excluded else ""
        with self.db.transaction() as tx:
            candidates = tx.query(
                "SELECT webhook_id, target, url, target_key FROM (SELECT webhook_id, target, url, target_key,"
                " next_attempt_at, ROW_NUMBER() OVER (PARTITION BY COALESCE(target_key, url)"
                " ORDER BY next_attempt_at) AS nth FROM webhook_deliveries"
                f" WHERE status = 'pending' AND next_attempt_at <= ?{skip}) due"
                " WHERE nth <= ? ORDER BY next_attempt_at LIMIT ?",
                (now, *excluded, per_target, limit),
            )
            keys = take(candidates)
            if not keys:
                return []
            where, params = _pairs(keys)
            return tx.query(
                "UPDATE webhook_deliveries SET next_attempt_at = ?, claimed_by = ?"
                f" WHERE status = 'pending' AND next_attempt_at <= ? AND {where}"
                " RETURNING webhook_id, target, url, image_id, payload, attempts",
                (until, owner, now, *params),
            )

    def renew(self, owner: str, keys: Sequence[Key], *, until: int) -> set[Key]:
        """Extend ``owner``'s leases of ``keys`` to ``until`` (epoch ms); return the keys it still held."""
        where, params = _pairs(keys)
        with self.db.transaction() as tx:
            kept = tx.query(
                "UPDATE webhook_deliveries SET next_attempt_at = ?"
                f" WHERE status = 'pending' AND claimed_by = ? AND {where} RETURNING webhook_id, target",
                (until, owner, *params),
            )
        return {key_of(row) for row in kept}

    def finish(self, owner: str, key: Key, status: str, attempts: int, code: int | None, error: str | None) -> bool:
        """Record a final outcome (``delivered``, ``exhausted``, ``disabled``) and let go of the row.

        False, and nothing written, if ``owner`` no longer holds the row's lease.
        """
        delivered_at = now_ms() if status == "delivered" else None
        return self._settle(
            owner,
            key,
            status=status,
            attempts=attempts,
            last_status_code=code,
            last_error=error,
            delivered_at=delivered_at,
        )

    def retry_later(
        self, owner: str, key: Key, attempts: int, code: int | None, error: str | None, delay_s: float
    ) -> bool:
        """Schedule the next attempt ``delay_s`` from now and let go of the row; False if ``owner`` lost its lease."""
        return self._settle(
            owner,
            key,
            attempts=attempts,
            last_status_code=code,
            last_error=error,
            next_attempt_at=now_ms() + int(delay_s * 1000),
        )

    def _settle(self, owner: str, key: Key, **columns: Any) -> bool:
        """Set ``columns`` and clear the claim, only while the row is pending and ``owner`` holds it."""
        assignments = ", ".join(f"{name} = ?" for name in columns)
        with self.db.transaction() as tx:
            changed = tx.execute(
                f"UPDATE webhook_deliveries SET {assignments}, claimed_by = NULL"
                " WHERE webhook_id = ? AND target = ? AND claimed_by = ? AND status = 'pending'",
                (*columns.values(), *key, owner),
            )
        return bool(changed)

    # --- subscriptions, as the dispatcher reads and changes them ---------------------

    def subscription_secret(self, sub_id: str) -> str | None:
        """The subscription's signing secret; None if it is gone or disabled."""
        with self.db.transaction() as tx:
            rows = tx.query("SELECT secret, active FROM webhook_subscriptions WHERE id = ?", (sub_id,))
        if not rows or not rows[0]["active"]:
            return None
        return str(rows[0]["secret"])

    def disable_subscription(self, sub_id: str, reason: str) -> None:
        with self.db.transaction() as tx:
            tx.execute(
                "UPDATE webhook_subscriptions SET active = ?, disabled_reason = ? WHERE id = ?",
                (False, reason, sub_id),
            )
