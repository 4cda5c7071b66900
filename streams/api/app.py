"""The FastAPI app: routes under ``/v1``, bearer keys per tenant, a rate limit per tenant.

``create_app(settings)`` only wires: it opens what every request shares
(``streams.api.state``: one result-store connection, migrated at start, one producer SDK
client, the image logic), keeps it on ``app.state`` for the routes' dependencies, closes
it when the server stops, includes the routers (``streams.api.routes``), answers every
error as a problem (``streams.api.problems``) and completes the OpenAPI document with
the schemas of the bodies the routes read themselves.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from streams.api.problems import install, problem_schemas
from streams.api.routes import ROUTERS, images
from streams.api.schemas import components
from streams.api.state import ApiState
from streams.config import Settings


def create_app(settings: Settings) -> FastAPI:
    """The API for ``settings``: migrates the result store and connects to the broker and storage at start."""
    app = FastAPI(
        title="darkroom",
        version="1",
        description="Image processing over HTTP: upload, run a pipeline, download the outputs (README, *HTTP API*).",
        lifespan=_lifespan,
        redirect_slashes=False,  # its redirects name the request's Host, which the client chooses
    )
    app.state.api = ApiState.open(settings)
    install(app)
    for router in ROUTERS:
        app.include_router(router)
    app.openapi = partial(_openapi, app)  # type: ignore[method-assign]
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    app.state.api.close()


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        found = schema.setdefault("components", {}).setdefault("schemas", {})
        found.update(problem_schemas())
        found.update(components(*images.REQUEST_MODELS))
        app.openapi_schema = schema
    return app.openapi_schema
