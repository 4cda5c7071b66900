"""Every error the API answers is ``application/problem+json`` (RFC 9457) with darkroom's code.

``code`` is darkroom's stable error code (README, *Error codes*) or one of the API's own
(``unauthorized``, ``not_found``, ``rate_limited``…, README, *HTTP API*); ``type`` is
``urn:darkroom:problem:<code>``. The status follows from the code: what the caller sent
is a 4xx, an outage of a service darkroom needs is a 503 with ``Retry-After``. Foreign
errors (FastAPI's validation, Starlette's 404/405) are translated here, in one place; an
unexpected exception is the only 500, and it names no internals.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from processors.errors import DarkroomError
from streams.errors import DependencyUnavailable

MEDIA_TYPE = "application/problem+json"
_log = structlog.get_logger("darkroom.api")

STATUS: Mapping[str, int] = {
    "invalid_request": 400,
    "unauthorized": 401,
    "not_found": 404,
    "method_not_allowed": 405,
    "object_missing": 409,
    "not_started": 409,
    "idempotency_key_in_use": 409,
    "file_too_large": 413,
    "unsupported_media_type": 415,
    "not_an_image": 415,
    "empty_input": 422,
    "invalid_pipeline": 422,
    "unknown_operation": 422,
    "operation_unavailable": 422,
    "invalid_parameters": 422,
    "invalid_image_id": 422,
    "bucket_not_allowed": 422,
    "invalid_webhook_url": 422,
    "webhook_target_blocked": 422,
    "webhook_target_unresolvable": 422,
    "idempotency_key_reused": 422,
    "rate_limited": 429,
    "internal_error": 500,
    "configuration_error": 503,
}
"""HTTP status by code; a code not listed is a 503 when retryable (an outage), else a 422.
``configuration_error`` (a service refused darkroom's credentials) is the server's fault,
not the request's: 503, without ``Retry-After`` (waiting alone does not cure it)."""

_TITLES: Mapping[int, str] = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_BY_STATUS = {404: "not_found", 405: "method_not_allowed", 413: "file_too_large", 415: "unsupported_media_type"}
OUTAGE_RETRY_AFTER_S = 5


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str


class Problem(BaseModel):
    """An error answer (RFC 9457)."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[FieldError] | None = None


class ApiProblem(Exception):
    """An error of the API itself (no key, not found, rate limited…), answered as a problem."""

    def __init__(self, code: str, detail: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.headers = dict(headers or {})


def status_of(code: str, retryable: bool = False) -> int:
    return STATUS.get(code, 503 if retryable else 422)


def problem(
    code: str,
    detail: str,
    *,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
    errors: Sequence[FieldError] | None = None,
) -> JSONResponse:
    status = status or status_of(code)
    body = Problem(
        type=f"urn:darkroom:problem:{code}",
        title=_TITLES.get(status, "Error"),
        status=status,
        detail=detail,
        code=code,
        errors=list(errors) if errors is not None else None,
    )
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, headers=headers, media_type=MEDIA_TYPE)


def _field_errors(raw: Sequence[Any]) -> list[FieldError]:
    """Where and what, from pydantic's errors (never their ``input``: it may be large or secret)."""
    return [
        FieldError(loc=[p if isinstance(p, int) else str(p) for p in e.get("loc", ())], msg=str(e.get("msg", "")))
        for e in raw
    ]


def invalid(raw_errors: Sequence[Any]) -> JSONResponse:
    errors = _field_errors(raw_errors)
    first = errors[0] if errors else None
    where = ".".join(str(p) for p in first.loc) if first else "request"
    detail = f"{where}: {first.msg}" if first else "the request is invalid"
    return problem("invalid_parameters", detail, status=422, errors=errors)


def install(app: FastAPI) -> None:
    """Answer every error as a problem."""

    async def api_problem(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiProblem)
        return problem(exc.code, exc.detail, headers=exc.headers)

    async def darkroom_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DarkroomError)
        outage = isinstance(exc, DependencyUnavailable)
        headers = {"Retry-After": str(OUTAGE_RETRY_AFTER_S)} if outage or exc.retryable else None
        status = status_of(exc.code, exc.retryable)
        if status >= 500:  # the server's to fix, or to wait out
            _log.warning("dependency unavailable", error_code=exc.code, error=exc.message)
        return problem(exc.code, exc.message, status=status, headers=headers)

    async def validation(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return invalid(exc.errors())

    async def http_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = _BY_STATUS.get(exc.status_code, "invalid_request")
        return problem(code, str(exc.detail), status=exc.status_code, headers=exc.headers)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        _log.error("request failed unexpectedly", path=request.url.path, exc_info=exc)
        return problem("internal_error", "the request failed unexpectedly; the server's log has the details")

    app.add_exception_handler(ApiProblem, api_problem)
    app.add_exception_handler(DarkroomError, darkroom_error)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)


def openapi_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The problem answers of an operation, for its OpenAPI ``responses``."""
    return {
        status: {
            "description": _TITLES[status],
            "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }


def problem_schemas() -> dict[str, Any]:
    """``Problem`` and ``FieldError`` for the OpenAPI components."""
    schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    return {"Problem": schema, **defs}
