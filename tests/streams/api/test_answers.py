"""A POST runs at most once per Idempotency-Key; answers carry Location and say when they are replayed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi import Request

from streams.api.answers import IDEMPOTENCY_KEY, answer, once
from streams.api.idempotency import Idempotency
from streams.api.problems import ApiProblem
from streams.sinks.database import Database


@pytest.fixture
def store(db: Database) -> Idempotency:
    return Idempotency(db)


def _request(key: str | None) -> Request:
    headers = [] if key is None else [(IDEMPOTENCY_KEY.lower().encode(), key.encode())]
    return Request({"type": "http", "method": "POST", "path": "/v1/images", "headers": headers})


class Effect:
    """A request's effect that records the ids it was given."""

    def __init__(self, fail: bool = False) -> None:
        self.ids: list[str] = []
        self.fail = fail

    def __call__(self, image_id: str) -> tuple[int, dict[str, Any]]:
        self.ids.append(image_id)
        if self.fail:
            raise ApiProblem("object_missing", "nothing uploaded")
        return 202, {"id": image_id, "status_url": f"http://api/v1/images/{image_id}"}


def test_an_answer_says_where_the_image_is_and_whether_it_is_a_replay() -> None:
    fresh = answer(201, {"id": "a", "status_url": "http://api/v1/images/a"})
    assert fresh.status_code == 201 and fresh.headers["location"] == "http://api/v1/images/a"
    assert "idempotent-replayed" not in fresh.headers
    again = answer(202, {"id": "a"}, replayed=True)
    assert "location" not in again.headers and again.headers["idempotent-replayed"] == "true"


def test_without_a_key_every_request_runs_with_a_fresh_id(store: Idempotency) -> None:
    effect = Effect()
    for _ in range(2):
        asyncio.run(once(_request(None), store, "acme", "digest", effect))
    assert len(set(effect.ids)) == 2


def test_with_a_key_the_same_request_runs_once_and_its_answer_is_sent_again(store: Idempotency) -> None:
    effect = Effect()
    first = asyncio.run(once(_request("k-1"), store, "acme", "digest", effect))
    again = asyncio.run(once(_request("k-1"), store, "acme", "digest", effect))
    assert len(effect.ids) == 1 and again.body == first.body and again.headers["idempotent-replayed"] == "true"
    with pytest.raises(ApiProblem) as reused:
        asyncio.run(once(_request("k-1"), store, "acme", "another request", effect))
    assert reused.value.code == "idempotency_key_reused"
    asyncio.run(once(_request("k-1"), store, "globex", "digest", effect))  # keys are per tenant
    assert len(effect.ids) == 2 and effect.ids[0] != effect.ids[1]


def test_a_request_that_failed_gives_its_key_back_and_its_retry_gets_the_same_id(store: Idempotency) -> None:
    failing = Effect(fail=True)
    with pytest.raises(ApiProblem):
        asyncio.run(once(_request("k-2"), store, "acme", "digest", failing))
    retried = Effect()
    asyncio.run(once(_request("k-2"), store, "acme", "digest", retried))
    assert retried.ids == failing.ids  # derived from the key and the request: the same event ids again


def test_a_malformed_key_is_a_bad_request(store: Idempotency) -> None:
    with pytest.raises(ApiProblem) as bad:
        asyncio.run(once(_request("two words"), store, "acme", "digest", Effect()))
    assert bad.value.code == "invalid_request"
