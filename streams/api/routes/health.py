"""``GET /healthz``: the process answers (no key, not rate limited)."""

from __future__ import annotations

from fastapi import APIRouter

from streams.api.schemas import Health

router = APIRouter(tags=["service"])


@router.get("/healthz", response_model=Health)
def healthz() -> dict[str, str]:
    """Liveness: the process answers (no key needed)."""
    return {"status": "ok"}
