"""Per-tenant API keys: created and revoked by operators, checked on every request.

A key is ``drk_`` + 43 characters of URL-safe base64 (256 random bits), shown once by
``create``. Only its sha256 is stored: a fast hash is enough for a token with that much
entropy (nothing to brute-force), and a leaked table grants nothing. The ``drk_`` prefix
lets secret scanners recognise a leaked key; ``hint`` (the first characters) lets an
operator tell keys apart in ``apikeys list`` without the table holding the secret.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from processors.errors import InvalidParameters
from streams.sinks.database import Database, now_ms

TOKEN_PREFIX = "drk_"
_TOKEN = re.compile(r"drk_[A-Za-z0-9_-]{43}")
TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""Tenants: 1–64 of ``A-Z a-z 0-9 . _ -``, starting with a letter or digit."""


@dataclass(frozen=True)
class ApiKey:
    id: str
    tenant: str
    hint: str
    """The token's first characters, ``drk_Ab3x…``: enough to tell keys apart, useless to an attacker."""
    created_at: int
    revoked_at: int | None


def check_tenant(tenant: str) -> str:
    if not TENANT.fullmatch(tenant):
        raise InvalidParameters("a tenant is 1-64 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit")
    return tenant


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create(db: Database, tenant: str) -> tuple[ApiKey, str]:
    """A new key for ``tenant``; the token is returned here and never again."""
    check_tenant(tenant)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(f"ak_{secrets.token_hex(6)}", tenant, token[:8] + "…", now_ms(), None)
    with db.transaction() as tx:
        tx.execute(
            "INSERT INTO api_keys (id, tenant, token_hash, hint, created_at) VALUES (?, ?, ?, ?, ?)",
            (key.id, key.tenant, _hash(token), key.hint, key.created_at),
        )
    return key, token


def list_keys(db: Database, tenant: str | None = None) -> list[ApiKey]:
    sql = "SELECT id, tenant, hint, created_at, revoked_at FROM api_keys"
    params: tuple[str, ...] = ()
    if tenant is not None:
        sql, params = sql + " WHERE tenant = ?", (tenant,)
    with db.transaction() as tx:
        rows = tx.query(sql + " ORDER BY created_at, id", params)
    return [ApiKey(**row) for row in rows]


def revoke(db: Database, tenant: str, key_ids: list[str]) -> list[str]:
    """Revoke the tenant's keys named; returns those that were active (others are not the tenant's, or gone)."""
    revoked = []
    with db.transaction() as tx:
        for key_id in key_ids:
            if tx.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND tenant = ? AND revoked_at IS NULL",
                (now_ms(), key_id, tenant),
            ):
                revoked.append(key_id)
    return revoked


def verify(db: Database, token: str) -> str | None:
    """The tenant of an active key, or None (malformed, unknown or revoked: the caller cannot tell which)."""
    if not _TOKEN.fullmatch(token):
        return None
    with db.transaction() as tx:
        rows = tx.query("SELECT tenant FROM api_keys WHERE token_hash = ? AND revoked_at IS NULL", (_hash(token),))
    return str(rows[0]["tenant"]) if rows else None
