"""The outbox's SQL on PostgreSQL and SQLite: what is queued, claimed, renewed and settled, and for whom."""

from __future__ import annotations

from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from streams.config import Settings
from streams.sinks.database import Database, Row, now_ms
from streams.sinks.outbox import CALLBACK, MAX_EXCLUDED, Key, Outbox, enqueue, key_of
from streams.sinks.webhooks.payload import payload_for

ME, OTHER = "owner-me", "owner-other"
LEASE_MS = 30_000


@pytest.fixture
def outbox(db: Database) -> Outbox:
    return Outbox(db)


def completed(
    n: int, *, callback_url: str | None = "http://hooks.test/cb", tenant: str | None = None
) -> dict[str, Any]:
    t0 = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=n)
    return {
        "event_id": f"evt-{n}",
        "upload_event_id": f"up-{n}",
        "image_id": f"img-{n}",
        "bucket": "darkroom",
        "source_key": f"uploads/{n}.jpg",
        "outputs": [],
        "callback_url": callback_url,
        "tenant": tenant,
        "submitted_at": t0,
        "completed_at": t0 + timedelta(seconds=1),
    }


def queue(db: Database, *events: dict[str, Any]) -> None:
    with db.transaction() as tx:
        for event in events:
            enqueue(tx, "completed", event)


def due_at(db: Database, times: dict[str, int]) -> None:
    """Set rows' ``next_attempt_at`` and ``created_at`` by webhook id: no two rows queued in one millisecond tie."""
    with db.transaction() as tx:
        for webhook_id, at in times.items():
            tx.execute(
                "UPDATE webhook_deliveries SET next_attempt_at = ?, created_at = ? WHERE webhook_id = ?",
                (at, at, webhook_id),
            )


def rows(db: Database) -> dict[Key, Row]:
    with db.transaction() as tx:
        return {key_of(row): row for row in tx.query("SELECT * FROM webhook_deliveries")}


def claim_all(outbox: Outbox, owner: str = ME, *, now: int | None = None, **options: Any) -> list[Row]:
    """Claim every candidate, as a dispatcher with free slots for all of them would."""
    now = now_ms() if now is None else now
    values: dict[str, Any] = {"closed": (), "per_target": 100, "limit": 100, **options}
    return outbox.claim(
        owner, now=now, until=now + LEASE_MS, take=lambda candidates: [key_of(r) for r in candidates], **values
    )


# --- queueing, in the result writer's transaction ------------------------------------------


def test_a_final_event_queues_its_callback_and_each_subscription_that_wants_it(outbox: Outbox, db: Database) -> None:
    wants, _ = outbox.subscribe("acme", "https://acme.test/all", ["image.completed", "image.failed"])
    outbox.subscribe("acme", "https://acme.test/failures", ["image.failed"])
    disabled, _ = outbox.subscribe("acme", "https://acme.test/gone", ["image.completed"])
    outbox.disable_subscription(disabled, "gone")
    outbox.subscribe("other", "https://other.test/all", ["image.completed"])
    event = completed(1, tenant="acme")
    before = now_ms()
    queue(db, event)

    queued = rows(db)
    assert set(queued) == {("evt-1", CALLBACK), ("evt-1", wants)}
    callback, subscription = queued["evt-1", CALLBACK], queued["evt-1", wants]
    assert (callback["url"], callback["target_key"]) == ("http://hooks.test/cb", "hooks.test:80")
    assert (subscription["url"], subscription["target_key"]) == ("https://acme.test/all", "acme.test:443")
    for row in (callback, subscription):
        assert row["payload"] == payload_for(event, "completed").decode()
        assert (row["image_id"], row["event_type"], row["status"], row["attempts"]) == (
            "img-1",
            "image.completed",
            "pending",
            0,
        )
        assert before <= row["next_attempt_at"] == row["created_at"] <= now_ms()
        assert row["claimed_by"] is None and row["delivered_at"] is None


def test_a_replayed_event_queues_nothing_new(outbox: Outbox, db: Database) -> None:
    queue(db, completed(1))
    assert len(claim_all(outbox)) == 1
    before = rows(db)
    queue(db, completed(1), completed(1))
    assert rows(db) == before and before["evt-1", CALLBACK]["claimed_by"] == ME  # no row added, the claim untouched


def test_an_event_without_a_callback_or_tenant_queues_nothing(db: Database) -> None:
    queue(db, completed(1, callback_url=None), completed(2, callback_url="", tenant=None))
    assert rows(db) == {}


# --- operators: subscriptions, listing, re-driving -----------------------------------------


def test_a_subscription_is_stored_with_its_own_new_secret(outbox: Outbox, db: Database) -> None:
    sub_id, secret = outbox.subscribe("acme", "https://acme.test/in", ["image.completed", "image.failed"])
    other_id, other_secret = outbox.subscribe("acme", "https://acme.test/in", ["image.completed"])
    assert sub_id.startswith("sub_") and secret.startswith("whsec_")
    assert other_id != sub_id and other_secret != secret
    with db.transaction() as tx:
        (row,) = tx.query("SELECT * FROM webhook_subscriptions WHERE id = ?", (sub_id,))
    assert (row["tenant"], row["url"], row["event_types"], bool(row["active"])) == (
        "acme",
        "https://acme.test/in",
        "image.completed,image.failed",
        True,
    )
    assert outbox.subscription_secret(sub_id) == secret


def test_a_disabled_or_unknown_subscription_has_no_secret(outbox: Outbox, db: Database) -> None:
    sub_id, _ = outbox.subscribe("acme", "https://acme.test/in", ["image.completed"])
    outbox.disable_subscription(sub_id, "https://acme.test/in answered 410 Gone")
    assert outbox.subscription_secret(sub_id) is None and outbox.subscription_secret("sub_nope") is None
    with db.transaction() as tx:
        (row,) = tx.query("SELECT active, disabled_reason FROM webhook_subscriptions WHERE id = ?", (sub_id,))
    assert (bool(row["active"]), row["disabled_reason"]) == (False, "https://acme.test/in answered 410 Gone")


def test_deliveries_are_listed_oldest_first_and_filtered(outbox: Outbox, db: Database) -> None:
    for n in range(3):
        queue(db, completed(n))
    due_at(db, {"evt-0": 20, "evt-1": 30, "evt-2": 10})
    with db.transaction() as tx:
        tx.execute("UPDATE webhook_deliveries SET status = 'exhausted' WHERE webhook_id = ?", ("evt-1",))
    listed = outbox.deliveries()
    assert [r["webhook_id"] for r in listed] == ["evt-2", "evt-0", "evt-1"]
    assert set(listed[0]) == {
        "webhook_id",
        "target",
        "url",
        "image_id",
        "event_type",
        "status",
        "attempts",
        "next_attempt_at",
        "last_status_code",
        "last_error",
        "created_at",
        "delivered_at",
    }  # never the payload, the target key or the claim
    assert [r["webhook_id"] for r in outbox.deliveries(image_id="img-0")] == ["evt-0"]
    assert [r["webhook_id"] for r in outbox.deliveries(status="exhausted")] == ["evt-1"]
    assert outbox.deliveries(image_id="img-0", status="exhausted") == []


def test_redeliver_re_drives_exhausted_deliveries_from_attempt_zero(outbox: Outbox, db: Database) -> None:
    queue(db, *(completed(n) for n in range(4)))
    with db.transaction() as tx:
        tx.execute(
            "UPDATE webhook_deliveries SET status = 'exhausted', attempts = 8, next_attempt_at = 0"
            " WHERE webhook_id <> 'evt-3'"
        )
    assert outbox.redeliver(["evt-0", "evt-3", "evt-9"]) == 1  # evt-3 is pending, evt-9 unknown
    before = now_ms()
    assert outbox.redeliver() == 2
    again = rows(db)
    assert all((r["status"], r["attempts"]) == ("pending", 0) for r in again.values())
    assert all(again["evt-" + n, CALLBACK]["next_attempt_at"] >= before for n in "12")
    assert outbox.redeliver() == 0


# --- the dispatcher's leases ------------------------------------------------------------------


def test_a_claim_takes_only_the_due_rows_it_is_given_and_returns_what_an_attempt_needs(
    outbox: Outbox, db: Database
) -> None:
    queue(db, *(completed(n) for n in range(3)))
    now = now_ms()
    due_at(db, {"evt-0": now - 2, "evt-1": now - 1, "evt-2": now + 60_000})
    offered: list[list[Row]] = []

    def take(candidates: list[Row]) -> list[Key]:
        offered.append(candidates)
        return [("evt-1", CALLBACK)]

    claimed = outbox.claim(ME, now=now, until=now + LEASE_MS, closed=(), per_target=10, limit=10, take=take)
    (candidates,) = offered
    assert [key_of(r) for r in candidates] == [("evt-0", CALLBACK), ("evt-1", CALLBACK)]  # not yet due: evt-2
    assert set(candidates[0]) == {"webhook_id", "target", "url", "target_key"}
    (row,) = claimed
    assert row == {
        "webhook_id": "evt-1",
        "target": CALLBACK,
        "url": "http://hooks.test/cb",
        "image_id": "img-1",
        "payload": payload_for(completed(1), "completed").decode(),
        "attempts": 0,
    }
    stored = rows(db)
    assert (stored["evt-1", CALLBACK]["claimed_by"], stored["evt-1", CALLBACK]["next_attempt_at"]) == (
        ME,
        now + LEASE_MS,
    )
    assert stored["evt-0", CALLBACK]["claimed_by"] is None and stored["evt-0", CALLBACK]["next_attempt_at"] < now


def test_a_claimed_row_is_not_claimed_again_until_its_lease_ends(outbox: Outbox, db: Database) -> None:
    queue(db, completed(1))
    now = now_ms()
    assert len(claim_all(outbox, now=now)) == 1
    assert claim_all(outbox, OTHER, now=now + LEASE_MS - 1) == []
    (taken,) = claim_all(outbox, OTHER, now=now + LEASE_MS)  # the lease ended: another dispatcher takes it
    assert rows(db)[key_of(taken)]["claimed_by"] == OTHER


def test_a_row_another_dispatcher_claims_between_the_select_and_the_update_is_not_returned(
    postgres_url: str, tmp_path: Path
) -> None:
    """Two claims run at once on PostgreSQL (SQLite's ``BEGIN IMMEDIATE`` serializes them): the
    UPDATE takes a candidate only if it is still due, so the second claimer gets nothing."""
    settings = Settings(home=tmp_path, database_url=postgres_url)
    with closing(Database(settings)) as db, closing(Database(settings)) as other:
        db.migrate()
        queue(db, completed(1))
        now = now_ms()

        def take(candidates: list[Row]) -> list[Key]:
            assert len(claim_all(Outbox(other), OTHER, now=now)) == 1  # committed before this claim's UPDATE
            return [key_of(r) for r in candidates]

        claimed = Outbox(db).claim(ME, now=now, until=now + LEASE_MS, closed=(), per_target=9, limit=9, take=take)
        assert claimed == [] and rows(db)["evt-1", CALLBACK]["claimed_by"] == OTHER


def test_nothing_taken_claims_nothing(outbox: Outbox, db: Database) -> None:
    queue(db, completed(1))
    now = now_ms()
    assert outbox.claim(ME, now=now, until=now + LEASE_MS, closed=(), per_target=1, limit=1, take=lambda c: []) == []
    assert rows(db)["evt-1", CALLBACK]["claimed_by"] is None


def test_candidates_skip_closed_targets_and_take_at_most_per_target_and_limit(outbox: Outbox, db: Database) -> None:
    urls = ["http://a.test/x", "http://b.test/x", "http://c.test/x"]
    queue(db, *(completed(10 * u + n, callback_url=url) for u, url in enumerate(urls) for n in range(3)))
    due_at(db, {f"evt-{10 * u + n}": 10 * u + n for u in range(3) for n in range(3)})
    with db.transaction() as tx:  # a row queued before target_key existed is never skipped as closed
        tx.execute("UPDATE webhook_deliveries SET target_key = NULL WHERE webhook_id = 'evt-20'")
    offered: list[list[str]] = []

    def candidates(closed: list[str], per_target: int, limit: int) -> list[str]:
        def take(due: list[Row]) -> list[Key]:
            offered.append([r["webhook_id"] for r in due])
            return []

        outbox.claim(ME, now=1000, until=1000 + LEASE_MS, closed=closed, per_target=per_target, limit=limit, take=take)
        return offered[-1]

    assert candidates(["b.test:80", "c.test:80"], 2, 9) == ["evt-0", "evt-1", "evt-20"]
    assert candidates([], 1, 2) == ["evt-0", "evt-10"]  # the oldest first, one per target
    # Only the first MAX_EXCLUDED closed keys (sorted) reach the SQL: b and c are left for the limiter.
    padding = [f"a{i:03}.test:80" for i in range(MAX_EXCLUDED)]
    assert candidates([*padding, "c.test:80", "b.test:80"], 5, 99) == [
        f"evt-{10 * u + n}" for u in range(3) for n in range(3)
    ]


def test_renewal_extends_only_the_leases_the_owner_still_holds(outbox: Outbox, db: Database) -> None:
    queue(db, *(completed(n) for n in range(3)))
    now = now_ms()
    assert len(claim_all(outbox, now=now)) == 3
    keys = [("evt-0", CALLBACK), ("evt-1", CALLBACK), ("evt-2", CALLBACK)]
    with db.transaction() as tx:
        tx.execute("UPDATE webhook_deliveries SET claimed_by = ? WHERE webhook_id = 'evt-1'", (OTHER,))
        tx.execute("UPDATE webhook_deliveries SET status = 'delivered' WHERE webhook_id = 'evt-2'")
    assert outbox.renew(ME, keys, until=now + 2 * LEASE_MS) == {("evt-0", CALLBACK)}
    stored = rows(db)
    assert [stored[k]["next_attempt_at"] for k in keys] == [now + 2 * LEASE_MS, now + LEASE_MS, now + LEASE_MS]


# --- outcomes, recorded only by the holder ------------------------------------------------------


def test_an_outcome_is_recorded_once_and_only_by_the_holder(outbox: Outbox, db: Database) -> None:
    queue(db, completed(1), completed(2))
    assert len(claim_all(outbox)) == 2
    delivered, exhausted = ("evt-1", CALLBACK), ("evt-2", CALLBACK)
    assert not outbox.finish(OTHER, delivered, "delivered", 1, 200, None)
    before = now_ms()
    assert outbox.finish(ME, delivered, "delivered", 1, 200, None)
    assert outbox.finish(ME, exhausted, "exhausted", 8, 500, "HTTP 500")
    assert not outbox.finish(ME, delivered, "exhausted", 2, 500, "HTTP 500")  # settled: no longer pending
    stored = rows(db)
    done, spent = stored[delivered], stored[exhausted]
    assert (done["status"], done["attempts"], done["last_status_code"], done["last_error"]) == (
        "delivered",
        1,
        200,
        None,
    )
    assert before <= done["delivered_at"] <= now_ms() and done["claimed_by"] is None
    assert (spent["status"], spent["attempts"], spent["last_status_code"], spent["last_error"]) == (
        "exhausted",
        8,
        500,
        "HTTP 500",
    )
    assert spent["delivered_at"] is None and spent["claimed_by"] is None


def test_a_retry_is_scheduled_and_lets_go_of_the_row(outbox: Outbox, db: Database) -> None:
    queue(db, completed(1))
    (row,) = claim_all(outbox)
    assert not outbox.retry_later(OTHER, key_of(row), 1, None, "timeout", 5.0)
    before = now_ms()
    assert outbox.retry_later(ME, key_of(row), 1, 429, "HTTP 429", 5.0)
    stored = rows(db)[key_of(row)]
    assert (stored["status"], stored["attempts"], stored["last_status_code"], stored["last_error"]) == (
        "pending",
        1,
        429,
        "HTTP 429",
    )
    assert before + 5_000 <= stored["next_attempt_at"] <= now_ms() + 5_000 and stored["claimed_by"] is None
    assert claim_all(outbox, OTHER, now=before + 4_999) == []
    assert [key_of(r) for r in claim_all(outbox, OTHER, now=stored["next_attempt_at"])] == [key_of(row)]
