"""Who is calling: the tenant of the request's bearer key, within its rate.

Every ``/v1`` route takes ``Tenant``: a missing, malformed, unknown or revoked key is
``401 unauthorized`` with ``WWW-Authenticate: Bearer`` (the caller cannot tell which);
a known key counts against its tenant's rate (``streams.api.rate``). Keys are checked
against the store on every request, so a revoked key stops at once.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from streams.api import keys
from streams.api.problems import ApiProblem
from streams.api.state import State

_bearer = HTTPBearer(auto_error=False, description="An API key from `darkroom apikeys create --tenant T`")


def tenant(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)], state: State) -> str:
    """The key's tenant, within its rate; 401 for a missing, unknown or revoked key."""
    found = keys.verify(state.db, credentials.credentials) if credentials is not None else None
    if found is None:
        raise ApiProblem(
            "unauthorized",
            "send an API key: Authorization: Bearer drk_…",
            headers={"WWW-Authenticate": "Bearer"},
        )
    state.rate.hit(found)
    return found


Tenant = Annotated[str, Depends(tenant)]
