"""``GET /healthz``: no key, and not counted against any tenant's rate."""

from __future__ import annotations

import httpx
import pytest

from tests.streams.api.conftest import Server

pytestmark = pytest.mark.integration


def test_liveness_needs_no_key_and_costs_no_rate(small_api: Server) -> None:
    with httpx.Client(base_url=small_api.url, timeout=30) as http:
        for _ in range(10):  # small_api allows a tenant 5 requests a minute
            alive = http.get("/healthz")
            assert alive.status_code == 200 and alive.json() == {"status": "ok"}
        assert http.get("/v1/operations", headers=small_api.auth()).status_code == 200
