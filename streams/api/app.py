"""The FastAPI app: routes under ``/v1``, bearer keys per tenant, a rate limit per tenant.

``create_app(settings)`` wires one result-store connection (migrated at start), one
producer SDK client and the image logic (``streams.api.images``) for every request
thread. Routes stay thin: parse and bound the request, check the key, call the image
logic in the thread pool, shape the answer. Errors are problems (``streams.api.problems``).

``POST /v1/images`` has two variants chosen by ``Content-Type``: JSON creates an image
and answers 201 with a presigned PUT URL (processing starts with ``/start``); multipart
or a raw body carries the bytes and answers 202 (processing has started). Bodies are
bounded before they are read (``Content-Length``) and while they are read.

No ``from __future__ import annotations`` here: FastAPI reads the routes' annotations at
run time, and some name types local to ``create_app`` (``Tenant``).
"""

import json
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Depends, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile

from processors.errors import EmptyInput
from streams.api import keys
from streams.api.idempotency import Idempotency, check_key, request_hash
from streams.api.images import Images, iso, new_id, safe_filename
from streams.api.problems import ApiProblem, install, openapi_responses, problem_schemas
from streams.client import Client
from streams.config import Settings
from streams.sinks.database import Database

JSON_LIMIT = 64 * 1024
"""Largest JSON body (a pipeline, a callback URL: a few hundred bytes in practice)."""
MULTIPART_OVERHEAD = 64 * 1024
"""What a multipart body may carry besides the file: boundaries, headers, the other fields."""
_TEXT = r"^[^\x00-\x1f\x7f]*$"
"""No control characters: every text field ends up in a database, an event or a URL."""

Text = Annotated[str, Field(max_length=2048, pattern=_TEXT)]


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid")
    operation: Annotated[str, Field(max_length=64, pattern=_TEXT)]
    params: dict[Annotated[str, Field(max_length=64, pattern=_TEXT)], Annotated[str, Field(max_length=256)]] = {}


Pipeline = Annotated[
    Annotated[str, Field(max_length=2048, pattern=_TEXT)] | Annotated[list[Step], Field(max_length=64)] | None,
    Field(
        description="A pipeline spec (`enhance,thumbnail:sizes=256+1024,format=webp`) or a list of steps",
        examples=["enhance,thumbnail:sizes=256+1024,format=webp"],
    ),
]


class CreateImage(BaseModel):
    """Exactly one of ``pipeline`` and ``preset``."""

    model_config = ConfigDict(extra="forbid")
    pipeline: Pipeline = None
    preset: Annotated[str | None, Field(max_length=64, pattern=_TEXT, examples=["web"])] = None
    callback_url: Text | None = None
    filename: Annotated[str | None, Field(max_length=255, pattern=_TEXT)] = None


class Reprocess(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pipeline: Pipeline = None
    """Another pipeline than the image's own."""
    force: bool = False
    """Recompute every step, even where finished outputs exist (objects are still never replaced)."""


class ImageCreated(BaseModel):
    id: str
    status: Literal["pending"]
    upload_url: str
    upload_method: Literal["PUT"]
    upload_expires_at: str
    start_url: str
    status_url: str


class ImageAccepted(BaseModel):
    id: str
    status: Literal["pending", "processing", "completed", "failed"]
    upload_event_id: str | None
    status_url: str


class Output(BaseModel):
    name: str
    step_index: int
    operation: str
    content_type: str
    size: int
    width: int
    height: int
    sha256: str
    url: str
    url_expires_at: str


class Timing(BaseModel):
    step_index: int | None
    operation: str | None
    backend: str | None
    duration_ms: float | None
    reused: bool | None
    details: dict[str, str] | None


class ImageError(BaseModel):
    code: str
    message: str | None
    retryable: bool
    failed_step: str | None


class Image(BaseModel):
    id: str
    status: Literal["pending", "processing", "completed", "failed"]
    pipeline: str
    preset: str | None
    callback_url: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    upload_event_id: str | None
    outputs: list[Output]
    timings: list[Timing]
    error: ImageError | None


class Parameter(BaseModel):
    name: str
    default: str
    accepts: str


class Operation(BaseModel):
    name: str
    version: str
    parameters: list[Parameter]


class Preset(BaseModel):
    name: str
    spec: str
    steps: list[Step]


class Operations(BaseModel):
    operations: list[Operation]
    presets: list[Preset]


class Model(BaseModel):
    name: str
    description: str
    present: bool
    source: str
    sha256: str
    size: int


class Models(BaseModel):
    models: list[Model]


class Health(BaseModel):
    status: Literal["ok"]


_Model = TypeVar("_Model", bound=BaseModel)
_bearer = HTTPBearer(auto_error=False, description="An API key from `darkroom apikeys create --tenant T`")
_IDEMPOTENCY = "Idempotency-Key"


class RateLimit:
    """``api_rate_per_minute`` requests per tenant in any 60 s (a moving window), per server process."""

    def __init__(self, per_minute: int) -> None:
        self.item = RateLimitItemPerMinute(per_minute) if per_minute > 0 else None
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    def hit(self, tenant: str) -> None:
        if self.item is None or self.limiter.hit(self.item, tenant):
            return
        reset, _ = self.limiter.get_window_stats(self.item, tenant)
        retry_after = max(1, math.ceil(reset - time.time()))
        raise ApiProblem(
            "rate_limited",
            f"over {self.item.amount} requests per minute for this tenant; retry in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )


def create_app(settings: Settings) -> FastAPI:
    """The API for ``settings``: migrates the result store and connects to the broker and storage at start."""
    db = Database(settings)
    db.migrate()
    client = Client(settings)
    images = Images(settings, db, client)
    idempotency = Idempotency(db)
    limit = RateLimit(settings.api_rate_per_minute)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        client.close()
        db.close()

    app = FastAPI(
        title="darkroom",
        version="1",
        description="Image processing over HTTP: upload, run a pipeline, download the outputs (README, *HTTP API*).",
        lifespan=lifespan,
    )
    install(app)

    def tenant(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> str:
        """The key's tenant, within its rate; 401 for a missing, unknown or revoked key."""
        found = keys.verify(db, credentials.credentials) if credentials is not None else None
        if found is None:
            raise ApiProblem(
                "unauthorized",
                "send an API key: Authorization: Bearer drk_…",
                headers={"WWW-Authenticate": "Bearer"},
            )
        limit.hit(found)
        return found

    Tenant = Annotated[str, Depends(tenant)]

    def links(request: Request, image_id: str) -> dict[str, str]:
        return {
            "status_url": str(request.url_for("get_image", image_id=image_id)),
            "start_url": str(request.url_for("start_image", image_id=image_id)),
        }

    def accepted(request: Request, row: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        body = {
            "id": row["id"],
            "status": images.view(row["tenant"], row["id"])["status"],
            "upload_event_id": row["upload_event_id"],
            "status_url": links(request, row["id"])["status_url"],
        }
        return 202, body

    async def once(
        request: Request, tenant: str, digest: str, run: Callable[[str], tuple[int, dict[str, Any]]]
    ) -> JSONResponse:
        """Run ``run`` (in the thread pool) at most once per Idempotency-Key; answer its (status, body).

        ``run`` gets the id of what it creates: a fresh one, or one derived from the key and
        the request's hash, so a retry whose first answer was lost (the server died after
        emitting) emits the same ids again, and the same key reused for another request
        after its answer expired does not land on the first request's image.
        """
        key = request.headers.get(_IDEMPOTENCY)
        if key is None:
            return _answer(*await run_in_threadpool(run, new_id(tenant, None)))
        stored = await run_in_threadpool(idempotency.begin, tenant, check_key(key), digest)
        if stored is not None:
            return _answer(stored.status_code, stored.body, replayed=True)
        try:
            status, body = await run_in_threadpool(run, new_id(tenant, f"{key}\n{digest}"))
        except BaseException:
            await run_in_threadpool(idempotency.abandon, tenant, key)
            raise
        await run_in_threadpool(idempotency.finish, tenant, key, status, body)
        return _answer(status, body)

    @app.get("/healthz", tags=["service"], response_model=Health)
    def healthz() -> dict[str, str]:
        """Liveness: the process answers (no key needed)."""
        return {"status": "ok"}

    @app.post(
        "/v1/images",
        tags=["images"],
        status_code=201,
        responses={
            201: {"model": ImageCreated, "description": "Created: PUT the bytes to upload_url, then POST start_url"},
            202: {"model": ImageAccepted, "description": "Accepted (direct upload): processing has started"},
            **openapi_responses(400, 401, 409, 413, 415, 422, 429),
        },
        openapi_extra={"requestBody": _CREATE_BODY},
    )
    async def create_image(
        request: Request,
        tenant: Tenant,
        pipeline: Annotated[str | None, Query(max_length=2048, pattern=_TEXT)] = None,
        preset: Annotated[
            str | None, Query(max_length=64, pattern=_TEXT, openapi_examples={"web": {"value": "web"}})
        ] = None,
        callback_url: Annotated[str | None, Query(max_length=2048, pattern=_TEXT)] = None,
        filename: Annotated[str | None, Query(max_length=255, pattern=_TEXT)] = None,
    ) -> JSONResponse:
        """Create an image: JSON → a presigned upload (201); multipart (`file`) or a raw body → direct (202).

        For a raw body, `pipeline`/`preset`/`callback_url`/`filename` come from the query string;
        for JSON and multipart, from the body.
        """
        query = {
            k: v
            for k, v in {
                "pipeline": pipeline,
                "preset": preset,
                "callback_url": callback_url,
                "filename": filename,
            }.items()
            if v is not None
        }
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if request.headers.get(_IDEMPOTENCY) is not None:
            check_key(request.headers[_IDEMPOTENCY])  # before the body is read
        if media == "application/json" or media.endswith("+json"):
            fields = _json_fields(await _read(request, JSON_LIMIT), query)
            order = await run_in_threadpool(images.order, _steps(fields.pipeline), fields.preset, fields.callback_url)

            def create(image_id: str) -> tuple[int, dict[str, Any]]:
                row = images.create(tenant, order, image_id, fields.filename)
                body = {
                    "id": row["id"],
                    "status": "pending",
                    "upload_url": row["upload_url"],
                    "upload_method": "PUT",
                    "upload_expires_at": iso(row["upload_expires_at"]),
                    **links(request, row["id"]),
                }
                return 201, body

            return await once(request, tenant, request_hash("create", fields.model_dump(mode="json")), create)
        if not media:
            raise ApiProblem(
                "unsupported_media_type", "send Content-Type: application/json, multipart/form-data or the image's"
            )
        if media == "multipart/form-data":
            fields, data, ctype = await _multipart(request, settings.max_file_bytes, query)
        else:
            data, ctype = await _read(request, settings.max_file_bytes), media
            fields = _fields({**query}, {})
        if not data:
            raise EmptyInput("the image is zero bytes")
        order = await run_in_threadpool(images.order, _steps(fields.pipeline), fields.preset, fields.callback_url)

        def direct(image_id: str) -> tuple[int, dict[str, Any]]:
            return accepted(request, images.submit(tenant, order, image_id, data, fields.filename, ctype))

        return await once(request, tenant, request_hash("direct", fields.model_dump(mode="json"), data), direct)

    @app.get(
        "/v1/images/{image_id}",
        name="get_image",
        tags=["images"],
        response_model=Image,
        responses=openapi_responses(401, 404, 422, 429),
    )
    def get_image(image_id: str, tenant: Tenant) -> dict[str, Any]:
        """Status, outputs with download URLs (1 h), per-step timings, the error code."""
        return images.view(tenant, image_id)

    @app.post(
        "/v1/images/{image_id}/start",
        name="start_image",
        tags=["images"],
        status_code=202,
        response_model=ImageAccepted,
        responses=openapi_responses(401, 404, 409, 413, 422, 429),
    )
    def start_image(image_id: str, tenant: Tenant, request: Request) -> JSONResponse:
        """Start processing once the upload has landed (again: nothing new happens)."""
        return _answer(*accepted(request, images.start(tenant, image_id)))

    @app.get(
        "/v1/images/{image_id}/outputs/{name}",
        tags=["images"],
        status_code=307,
        response_class=RedirectResponse,
        responses={
            307: {"description": "To the object (a presigned URL, valid 1 h)"},
            **openapi_responses(401, 404, 422, 429),
        },
    )
    def get_output(image_id: str, name: str, tenant: Tenant) -> RedirectResponse:
        """Redirect to an output: its name (`thumb-256`), or `STEP-OPERATION-NAME` (`1-thumbnail-thumb-256`)."""
        return RedirectResponse(images.output_url(tenant, image_id, name), status_code=307)

    @app.post(
        "/v1/images/{image_id}/reprocess",
        tags=["images"],
        status_code=202,
        response_model=ImageAccepted,
        responses=openapi_responses(400, 401, 404, 409, 413, 422, 429),
        openapi_extra={
            "requestBody": {
                "required": False,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Reprocess"}}},
            }
        },
    )
    async def reprocess_image(image_id: str, tenant: Tenant, request: Request) -> JSONResponse:
        """Process the image again (README, *Replay*): finished outputs are reused unless `force`."""
        raw = await _read(request, JSON_LIMIT)
        options = _json(raw, Reprocess) if raw.strip() else Reprocess()
        digest = request_hash(f"reprocess/{image_id}", options.model_dump(mode="json"))

        def run(replay_id: str) -> tuple[int, dict[str, Any]]:
            steps = _steps(options.pipeline)
            return accepted(request, images.reprocess(tenant, image_id, steps, options.force, f"api-{replay_id[:12]}"))

        return await once(request, tenant, digest, run)

    @app.get("/v1/operations", tags=["service"], response_model=Operations, responses=openapi_responses(401, 429))
    def operations(tenant: Tenant) -> dict[str, Any]:
        """The operations, their parameters with defaults, and the presets."""
        return images.operations()

    @app.get("/v1/models", tags=["service"], response_model=Models, responses=openapi_responses(401, 429))
    def models(tenant: Tenant) -> dict[str, Any]:
        """The upscale models and whether their weights are prepared (`darkroom models fetch`)."""
        return images.models()

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(problem_schemas())
            components.update(_schemas(CreateImage))
            components.update(_schemas(Reprocess))
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _schemas(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    return {model.__name__: schema, **defs}


_CREATE_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {"$ref": "#/components/schemas/CreateImage"},
            "examples": {
                "preset": {"value": {"preset": "web", "filename": "photo.jpg"}},
                "pipeline": {"value": {"pipeline": "enhance,thumbnail:sizes=256+1024,format=webp"}},
            },
        },
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {"type": "string", "format": "binary"},
                    "pipeline": {"type": "string", "maxLength": 2048},
                    "preset": {"type": "string", "maxLength": 64},
                    "callback_url": {"type": "string", "maxLength": 2048},
                    "filename": {"type": "string", "maxLength": 255},
                },
            }
        },
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
}


def _answer(status: int, body: dict[str, Any], *, replayed: bool = False) -> JSONResponse:
    headers = {"Location": body["status_url"]} if "status_url" in body else {}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(body, status_code=status, headers=headers)


async def _read(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to be over ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        if not declared.isdigit():
            raise ApiProblem("invalid_request", "Content-Length is not a number")
        raise ApiProblem("file_too_large", f"the body is {declared} bytes; the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiProblem("file_too_large", f"the body is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _fields(query: dict[str, Any], body: dict[str, Any]) -> CreateImage:
    both = sorted(set(query) & set(body))
    if both:
        raise ApiProblem("invalid_parameters", f"{', '.join(both)} given both in the query string and in the body")
    return _valid(CreateImage, {**query, **body})


def _valid(model: type[_Model], doc: Any) -> _Model:
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_input=False)) from None


def _parsed(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiProblem("invalid_request", "the body is not JSON") from None


def _json(raw: bytes, model: type[_Model]) -> _Model:
    return _valid(model, _parsed(raw))


def _json_fields(raw: bytes, query: dict[str, Any]) -> CreateImage:
    doc = _parsed(raw)
    if not isinstance(doc, dict):
        raise ApiProblem("invalid_parameters", "the body must be a JSON object")
    return _fields(query, doc)


async def _multipart(request: Request, max_file: int, query: dict[str, Any]) -> tuple[CreateImage, bytes, str]:
    body = await _read(request, max_file + MULTIPART_OVERHEAD)

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async with Request(request.scope, replay).form(max_files=1, max_fields=8, max_part_size=JSON_LIMIT) as form:
        upload = form.get("file")
        if upload is None:
            raise ApiProblem("invalid_parameters", "multipart body without a `file` part")
        fields: dict[str, Any] = {}
        for name, value in form.multi_items():
            if name == "file":
                continue
            if not isinstance(value, str):
                raise ApiProblem("invalid_parameters", f"{name} must be a text field, not a file")
            fields[name] = value
        if isinstance(upload, UploadFile):
            data, ctype = await upload.read(), upload.content_type or "application/octet-stream"
            fields.setdefault("filename", safe_filename(upload.filename))
        else:
            data, ctype = upload.encode(), "application/octet-stream"
    if len(data) > max_file:
        raise ApiProblem("file_too_large", f"the file is over the {max_file}-byte limit")
    return _fields(query, {k: v for k, v in fields.items() if v is not None}), data, ctype


def _steps(pipeline: str | list[Step] | None) -> str | list[dict[str, Any]] | None:
    return pipeline if pipeline is None or isinstance(pipeline, str) else [s.model_dump() for s in pipeline]
