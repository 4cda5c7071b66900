"""``create_app`` wires the routers, the problems and the state; the document is whole."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from streams.api.app import create_app
from streams.config import Settings
from tests.streams.api.conftest import Server

pytestmark = pytest.mark.integration

OPERATIONS = {
    ("get", "/healthz"): "healthz_healthz_get",
    ("post", "/v1/images"): "create_image_v1_images_post",
    ("get", "/v1/images/{image_id}"): "get_image_v1_images__image_id__get",
    ("post", "/v1/images/{image_id}/start"): "start_image_v1_images__image_id__start_post",
    ("get", "/v1/images/{image_id}/outputs/{name}"): "get_output_v1_images__image_id__outputs__name__get",
    ("post", "/v1/images/{image_id}/reprocess"): "reprocess_image_v1_images__image_id__reprocess_post",
    ("get", "/v1/operations"): "operations_v1_operations_get",
    ("get", "/v1/models"): "models_v1_models_get",
}
"""Every operation and its id, as generated clients name their methods."""


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


def test_the_document_has_every_route_once_and_every_schema_it_refers_to(small_api: Server) -> None:
    doc = httpx.get(f"{small_api.url}/openapi.json").json()
    found = {(method, path): op["operationId"] for path, ops in doc["paths"].items() for method, op in ops.items()}
    assert found == OPERATIONS
    schemas = doc["components"]["schemas"]
    assert {r.removeprefix("#/components/schemas/") for r in _refs(doc)} <= set(schemas)
    assert {"CreateImage", "Reprocess", "Step", "Problem", "FieldError"} <= set(schemas)
    tags = {path: op["tags"] for path, ops in doc["paths"].items() for op in ops.values()}
    assert tags["/healthz"] == tags["/v1/models"] == ["service"] and tags["/v1/images/{image_id}"] == ["images"]
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_the_state_is_closed_when_the_server_stops(settings: Settings) -> None:
    app = create_app(settings)
    state, closed = app.state.api, []

    class Closing:
        def close(self) -> None:
            closed.append(True)

    app.state.api = Closing()
    with TestClient(app) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        assert closed == []
    assert closed == [True]
    state.close()
