"""``GET /v1/operations`` and ``GET /v1/models``: what ``darkroom operations`` and ``models list`` show."""

from __future__ import annotations

import json

import httpx
import pytest

from streams.wire.pipeline import catalog
from tests.streams.api.conftest import Server

pytestmark = pytest.mark.integration


def test_the_operations_are_the_catalog_and_the_models_say_whether_they_are_prepared(small_api: Server) -> None:
    with httpx.Client(base_url=small_api.url, headers=small_api.auth(), timeout=30) as http:
        assert http.get("/v1/operations").json() == json.loads(json.dumps(catalog()))
        models = http.get("/v1/models").json()["models"]
        assert models and all(set(m) == {"name", "description", "present", "source", "sha256", "size"} for m in models)
        for path in ("/v1/operations", "/v1/models"):
            refused = httpx.get(f"{small_api.url}{path}")
            assert refused.status_code == 401 and refused.json()["code"] == "unauthorized"
