"""``/v1/operations`` and ``/v1/models``: what a pipeline may say, and which upscale weights are prepared."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from streams.api.auth import Tenant
from streams.api.problems import openapi_responses
from streams.api.schemas import Models, Operations
from streams.api.state import State

router = APIRouter(tags=["service"], responses=openapi_responses(401, 429, 503))


@router.get("/v1/operations", response_model=Operations)
def operations(tenant: Tenant, state: State) -> dict[str, Any]:
    """The operations, their parameters with defaults, and the presets."""
    return state.images.operations()


@router.get("/v1/models", response_model=Models)
def models(tenant: Tenant, state: State) -> dict[str, Any]:
    """The upscale models and whether their weights are prepared (`darkroom models fetch`)."""
    return state.images.models()
