"""``Tenant``: the bearer key's tenant, checked against the store on every request, within its rate."""

from __future__ import annotations

from types import SimpleNamespace

from fastapi import FastAPI
from fastapi.testclient import TestClient

from streams.api import keys
from streams.api.auth import Tenant
from streams.api.problems import install
from streams.api.rate import RateLimit
from streams.sinks.database import Database


def _client(db: Database, per_minute: int) -> TestClient:
    """An app with one route that needs a key, on a state that has what ``Tenant`` reads."""
    app = FastAPI()
    install(app)
    app.state.api = SimpleNamespace(db=db, rate=RateLimit(per_minute))

    @app.get("/whoami")
    def whoami(tenant: Tenant) -> dict[str, str]:
        return {"tenant": tenant}

    return TestClient(app)


def test_a_request_is_its_keys_tenant_and_nothing_without_an_active_key(db: Database) -> None:
    key, token = keys.create(db, "acme")
    http = _client(db, 0)
    assert http.get("/whoami", headers={"Authorization": f"Bearer {token}"}).json() == {"tenant": "acme"}
    keys.revoke(db, "acme", [key.id])
    for headers in (
        {},
        {"Authorization": f"Bearer {token}"},
        {"Authorization": "Bearer drk_nope"},
        {"Authorization": "Basic YTpi"},
    ):
        refused = http.get("/whoami", headers=headers)
        assert refused.status_code == 401 and refused.json()["code"] == "unauthorized"
        assert refused.headers["www-authenticate"] == "Bearer"


def test_a_known_key_counts_against_its_tenants_rate(db: Database) -> None:
    _, acme = keys.create(db, "acme")
    _, globex = keys.create(db, "globex")
    http = _client(db, 2)
    assert [http.get("/whoami", headers={"Authorization": f"Bearer {acme}"}).status_code for _ in range(3)] == [
        200,
        200,
        429,
    ]
    assert http.get("/whoami", headers={"Authorization": f"Bearer {globex}"}).status_code == 200
    for _ in range(3):  # an unknown key is refused before it is counted
        assert http.get("/whoami", headers={"Authorization": "Bearer drk_nope"}).status_code == 401
