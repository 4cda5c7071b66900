"""How the image routes answer: JSON with ``Location``, and a POST at most once per Idempotency-Key.

``once`` runs a request's effect in the thread pool unless its key was seen with the same
request (README, *Retries*): then the stored answer is sent again, with
``Idempotent-Replayed: true``. The effect gets the id of what it creates: a fresh one, or
one derived from the key and the request's hash, so a retry whose first answer was lost
(the server died after emitting) emits the same ids again, and the same key reused for
another request after its answer expired does not land on the first request's image.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from streams.api.idempotency import Idempotency, check_key
from streams.api.images import new_id

IDEMPOTENCY_KEY = "Idempotency-Key"
Run = Callable[[str], tuple[int, dict[str, Any]]]
"""A request's effect: given the id to create, its (status, body)."""


def answer(status: int, body: dict[str, Any], *, replayed: bool = False) -> JSONResponse:
    """``body`` with ``Location: status_url`` where it has one."""
    headers = {"Location": body["status_url"]} if "status_url" in body else {}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(body, status_code=status, headers=headers)


def idempotency_key(request: Request) -> str | None:
    """The request's Idempotency-Key, checked (400 for a malformed one), or None."""
    key = request.headers.get(IDEMPOTENCY_KEY)
    return None if key is None else check_key(key)


async def once(request: Request, store: Idempotency, tenant: str, digest: str, run: Run) -> JSONResponse:
    """Answer ``run``'s (status, body), running it at most once per Idempotency-Key and ``digest``."""
    key = idempotency_key(request)
    if key is None:
        return answer(*await run_in_threadpool(run, new_id(tenant, None)))
    stored = await run_in_threadpool(store.begin, tenant, key, digest)
    if stored is not None:
        return answer(stored.status_code, stored.body, replayed=True)
    try:
        status, body = await run_in_threadpool(run, new_id(tenant, f"{key}\n{digest}"))
    except BaseException:
        await run_in_threadpool(store.abandon, tenant, key)
        raise
    await run_in_threadpool(store.finish, tenant, key, status, body)
    return answer(status, body)
