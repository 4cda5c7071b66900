"""The API's tables on PostgreSQL and SQLite: keys kept only as hashes, Idempotency-Key reservations."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from streams.api import keys
from streams.api.idempotency import KEEP_MS, STALE_MS, Idempotency, Stored
from streams.api.problems import ApiProblem
from streams.config import load_settings
from streams.sinks.database import Database, now_ms


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(load_settings().replace(database_url=database_url))
    database.migrate()
    yield database
    database.close()


def test_a_key_is_stored_as_a_hash_verified_while_active_and_scoped_to_its_tenant(db: Database) -> None:
    key, token = keys.create(db, "acme")
    assert token.startswith("drk_") and keys.verify(db, token) == "acme"
    with db.transaction() as tx:
        stored = tx.query("SELECT * FROM api_keys")
    assert token not in str(stored) and stored[0]["hint"] == token[:8] + "…"
    assert keys.verify(db, token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert keys.verify(db, "drk_short") is None and keys.verify(db, "") is None
    assert keys.revoke(db, "globex", [key.id]) == []  # not globex's key
    assert keys.revoke(db, "acme", [key.id, "ak_nope"]) == [key.id]
    assert keys.verify(db, token) is None
    assert [(k.id, k.revoked_at is not None) for k in keys.list_keys(db, "acme")] == [(key.id, True)]
    with pytest.raises(keys.InvalidParameters):
        keys.create(db, "no spaces")


def test_an_idempotency_key_is_reserved_answered_given_back_and_expires(db: Database) -> None:
    store = Idempotency(db)
    assert store.begin("acme", "k", "h1") is None
    with pytest.raises(ApiProblem) as running:
        store.begin("acme", "k", "h1")
    assert running.value.code == "idempotency_key_in_use"
    store.finish("acme", "k", 201, {"id": "x"})
    assert store.begin("acme", "k", "h1") == Stored(201, {"id": "x"})
    with pytest.raises(ApiProblem) as reused:
        store.begin("acme", "k", "h2")
    assert reused.value.code == "idempotency_key_reused"
    assert store.begin("globex", "k", "h2") is None  # keys are per tenant

    assert store.begin("acme", "failed", "h") is None
    store.abandon("acme", "failed")
    assert store.begin("acme", "failed", "other") is None  # given back: free for another request

    with db.transaction() as tx:  # a reservation whose process died, and an answer a day old
        tx.execute(
            "UPDATE api_idempotency SET created_at = ? WHERE idempotency_key = 'failed'", (now_ms() - STALE_MS - 1,)
        )
        tx.execute(
            "UPDATE api_idempotency SET created_at = ? WHERE tenant = 'acme' AND idempotency_key = 'k'",
            (now_ms() - KEEP_MS - 1,),
        )
    assert store.begin("acme", "failed", "other") is None
    assert Idempotency(db).begin("acme", "k", "h2") is None
