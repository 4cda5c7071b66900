"""``Idempotency-Key``: a POST sent again with the same key gets the first answer, not a second effect.

The key is reserved in the database before the request runs (``begin``), and the answer
stored once it succeeded (``finish``); a request that fails gives the key back
(``abandon``), so the caller can fix it and retry. The same key with another request
(another body, another endpoint) is refused with ``idempotency_key_reused`` (422); one
still running with ``idempotency_key_in_use`` (409). A reservation whose process died is
taken over after ``STALE_MS``. Answers are kept for ``KEEP_MS`` (24 h, as Stripe's), then
the key is free again. The request's hash is over what the API understood (the
fields and the bytes' sha256), so a multipart retry with another boundary still matches.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from streams.api.problems import ApiProblem
from streams.sinks.database import Database, now_ms

STALE_MS = 5 * 60 * 1000
KEEP_MS = 24 * 3600 * 1000
_PURGE_EVERY_MS = 60 * 1000
KEY = re.compile(r"[\x21-\x7e]{1,255}")
"""1–255 visible ASCII characters."""


@dataclass(frozen=True)
class Stored:
    status_code: int
    body: dict[str, Any]


def request_hash(endpoint: str, fields: dict[str, Any], data: bytes | None = None) -> str:
    doc = {"endpoint": endpoint, "fields": fields, "data": None if data is None else hashlib.sha256(data).hexdigest()}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def check_key(key: str) -> str:
    if not KEY.fullmatch(key):
        raise ApiProblem("invalid_request", "Idempotency-Key must be 1-255 visible ASCII characters")
    return key


class Idempotency:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._purged_at = 0

    def begin(self, tenant: str, key: str, digest: str) -> Stored | None:
        """None: go ahead (the key is now reserved); a ``Stored`` answer: send it again."""
        now = now_ms()
        with self.db.transaction() as tx:
            if now - self._purged_at > _PURGE_EVERY_MS:
                tx.execute("DELETE FROM api_idempotency WHERE created_at < ?", (now - KEEP_MS,))
                self._purged_at = now
            if tx.execute(
                """
                INSERT INTO api_idempotency (tenant, idempotency_key, request_hash, created_at) VALUES (?, ?, ?, ?)
                ON CONFLICT (tenant, idempotency_key) DO NOTHING
                """,
                (tenant, key, digest, now),
            ):
                return None
            rows = tx.query(
                "SELECT request_hash, status_code, response, created_at FROM api_idempotency"
                " WHERE tenant = ? AND idempotency_key = ?",
                (tenant, key),
            )
            if not rows:  # given back between the two statements: the caller retries
                raise ApiProblem("idempotency_key_in_use", "a request with this Idempotency-Key is in progress")
            row = rows[0]
            if row["request_hash"] != digest:
                raise ApiProblem(
                    "idempotency_key_reused", "this Idempotency-Key was used for another request; use a new key"
                )
            if row["status_code"] is not None:
                return Stored(int(row["status_code"]), json.loads(row["response"]))
            if now - row["created_at"] < STALE_MS:
                raise ApiProblem(
                    "idempotency_key_in_use",
                    "a request with this Idempotency-Key is in progress; retry later",
                    headers={"Retry-After": "1"},
                )
            tx.execute(
                "UPDATE api_idempotency SET created_at = ? WHERE tenant = ? AND idempotency_key = ?",
                (now, tenant, key),
            )
            return None

    def finish(self, tenant: str, key: str, status_code: int, body: dict[str, Any]) -> None:
        with self.db.transaction() as tx:
            tx.execute(
                "UPDATE api_idempotency SET status_code = ?, response = ? WHERE tenant = ? AND idempotency_key = ?",
                (status_code, json.dumps(body, sort_keys=True), tenant, key),
            )

    def abandon(self, tenant: str, key: str) -> None:
        with self.db.transaction() as tx:
            tx.execute(
                "DELETE FROM api_idempotency WHERE tenant = ? AND idempotency_key = ? AND status_code IS NULL",
                (tenant, key),
            )
