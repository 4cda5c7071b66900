"""``/v1/images``: create (presigned or direct upload), start, status, outputs, reprocess.

Thin: bound and parse the request (``streams.api.bodies``), call the image logic
(``streams.api.images``) in the thread pool, shape the answer (``streams.api.answers``).

``POST /v1/images`` has two variants chosen by ``Content-Type``: JSON creates an image
and answers 201 with a presigned PUT URL (processing starts with ``/start``); multipart
or a raw body (``image/…``) carries the bytes and answers 202 (processing has started),
or 415 for bytes that are not an image darkroom reads. Its body is read here, not by
FastAPI, so that it is bounded before it is parsed; its OpenAPI body is written from the
same models (``CREATE_BODY``).

Links in answers (``status_url``, ``start_url``, ``Location``) are paths under
``DARKROOM_API_PUBLIC_URL``, or relative ones without it: never built from the request's
``Host``, which the client chooses.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, RedirectResponse

from processors.errors import EmptyInput
from streams.api import bodies
from streams.api.answers import answer, idempotency_key, once
from streams.api.auth import Tenant
from streams.api.idempotency import request_hash
from streams.api.images import Order, iso
from streams.api.limits import MAX_JSON_BYTES
from streams.api.problems import ApiProblem, openapi_responses
from streams.api.schemas import (
    CreateImage,
    Image,
    ImageAccepted,
    ImageCreated,
    Pipeline,
    Reprocess,
    UploadFields,
    form_fields,
    ref,
)
from streams.api.state import ApiState, State
from streams.wire import pipeline as pipelines

router = APIRouter(tags=["images"], responses=openapi_responses(401, 429, 503))

REQUEST_MODELS = (CreateImage, Reprocess)
"""The bodies read here rather than by FastAPI: the app puts their schemas into the document."""
_BINARY = {"type": "string", "format": "binary"}
_IMAGE = "image/*"
CREATE_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": ref(CreateImage),
            "examples": {
                "preset": {"value": {"preset": "web", "filename": "photo.jpg"}},
                "pipeline": {"value": {"pipeline": "enhance,thumbnail:sizes=256+1024,format=webp"}},
            },
        },
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {"file": _BINARY, **form_fields(UploadFields)},
            },
            "encoding": {"file": {"contentType": _IMAGE}},
        },
        _IMAGE: {"schema": _BINARY},
    },
}
"""JSON, multipart or a raw body: the direct upload's text fields are ``UploadFields``, as in the query string."""


@router.post(
    "/v1/images",
    status_code=201,
    responses={
        201: {"model": ImageCreated, "description": "Created: PUT the bytes to upload_url, then POST start_url"},
        202: {"model": ImageAccepted, "description": "Accepted (direct upload): processing has started"},
        **openapi_responses(400, 409, 413, 415, 422),
    },
    openapi_extra={"requestBody": CREATE_BODY},
)
async def create_image(
    request: Request, tenant: Tenant, state: State, query: Annotated[UploadFields, Query()]
) -> JSONResponse:
    """Create an image: JSON → a presigned upload (201); multipart (`file`) or a raw body → direct (202).

    For a raw body, `pipeline`/`preset`/`callback_url`/`filename` come from the query string;
    for JSON and multipart, from the body. The image's bytes and their Content-Type (the
    file part's, or the request's) must be an image darkroom reads: 415 otherwise.
    """
    given = query.model_dump(exclude_none=True)
    media = bodies.media_type(request.headers.get("content-type"))
    idempotency_key(request)  # checked before the body is read
    if media == "application/json" or media.endswith("+json"):
        doc = bodies.parsed(await bodies.read(request, MAX_JSON_BYTES))
        if not isinstance(doc, dict):
            raise ApiProblem("invalid_parameters", "the body must be a JSON object")
        fields = _fields(given, doc)
        order = await _order(state, fields)

        def create(image_id: str) -> tuple[int, dict[str, Any]]:
            row = state.images.create(tenant, order, image_id, fields.filename)
            body = {
                "id": row["id"],
                "status": "pending",
                "upload_url": row["upload_url"],
                "upload_method": "PUT",
                "upload_expires_at": iso(row["upload_expires_at"]),
                **_links(state, row["id"]),
            }
            return 201, body

        digest = request_hash("create", fields.model_dump(mode="json"))
        return await once(request, state.idempotency, tenant, digest, create)
    max_file = state.settings.max_file_bytes
    if media == "multipart/form-data":
        form = await bodies.multipart(request, max_file)
        data, ctype = form.data, bodies.image_type(form.content_type, "the file part's Content-Type")
        named = form.filename is not None and "filename" not in form.fields and "filename" not in given
        fields = _fields(given, {**form.fields, "filename": form.filename} if named else form.fields)
    else:
        ctype = bodies.image_type(media, "Content-Type (application/json, multipart/form-data or the image's)")
        data = await bodies.read(request, max_file)
        fields = _fields(given, {})
    if not data:
        raise EmptyInput("the image is zero bytes")
    await run_in_threadpool(bodies.image, data, state.settings.limits)
    order = await _order(state, fields)

    def direct(image_id: str) -> tuple[int, dict[str, Any]]:
        return _accepted(state, state.images.submit(tenant, order, image_id, data, fields.filename, ctype))

    digest = request_hash("direct", fields.model_dump(mode="json"), data)
    return await once(request, state.idempotency, tenant, digest, direct)


@router.get(
    "/v1/images/{image_id}",
    name="get_image",
    response_model=Image,
    responses=openapi_responses(404),
)
def get_image(image_id: str, tenant: Tenant, state: State) -> dict[str, Any]:
    """Status, outputs with download URLs (1 h), per-step timings, the error code."""
    return state.images.view(tenant, image_id)


@router.post(
    "/v1/images/{image_id}/start",
    name="start_image",
    status_code=202,
    response_model=ImageAccepted,
    responses=openapi_responses(404, 409, 413, 422),
)
def start_image(image_id: str, tenant: Tenant, state: State) -> JSONResponse:
    """Start processing once the upload has landed (again: nothing new happens)."""
    return answer(*_accepted(state, state.images.start(tenant, image_id)))


@router.get(
    "/v1/images/{image_id}/outputs/{name}",
    status_code=307,
    response_class=RedirectResponse,
    responses={
        307: {"description": "To the object (a presigned URL, valid 1 h)"},
        **openapi_responses(404),
    },
)
def get_output(image_id: str, name: str, tenant: Tenant, state: State) -> RedirectResponse:
    """Redirect to an output: its name (`thumb-256`), or `STEP-OPERATION-NAME` (`1-thumbnail-thumb-256`)."""
    return RedirectResponse(state.images.output_url(tenant, image_id, name), status_code=307)


@router.post(
    "/v1/images/{image_id}/reprocess",
    status_code=202,
    response_model=ImageAccepted,
    responses=openapi_responses(400, 404, 409, 413, 422),
    openapi_extra={"requestBody": {"required": False, "content": {"application/json": {"schema": ref(Reprocess)}}}},
)
async def reprocess_image(image_id: str, tenant: Tenant, state: State, request: Request) -> JSONResponse:
    """Process the image again (README, *Replay*): finished outputs are reused unless `force`."""
    raw = await bodies.read(request, MAX_JSON_BYTES)
    options = bodies.validated(Reprocess, bodies.parsed(raw)) if raw.strip() else Reprocess()
    digest = request_hash(f"reprocess/{image_id}", options.model_dump(mode="json"))

    def run(replay_id: str) -> tuple[int, dict[str, Any]]:
        steps = _steps(options.pipeline)
        row = state.images.reprocess(tenant, image_id, steps, options.force, f"api-{replay_id[:12]}")
        return _accepted(state, row)

    return await once(request, state.idempotency, tenant, digest, run)


def _fields(query: dict[str, Any], body: dict[str, Any]) -> CreateImage:
    """The request's fields, from the query string or the body but never both."""
    both = sorted(set(query) & set(body))
    if both:
        raise ApiProblem("invalid_parameters", f"{', '.join(both)} given both in the query string and in the body")
    return bodies.validated(CreateImage, {**query, **body})


async def _order(state: ApiState, fields: CreateImage) -> Order:
    """What the request asks for, validated (in the thread pool: a callback URL is resolved)."""
    return await run_in_threadpool(state.images.order, _steps(fields.pipeline), fields.preset, fields.callback_url)


def _steps(pipeline: Pipeline) -> str | list[pipelines.Step] | None:
    return pipeline if pipeline is None or isinstance(pipeline, str) else [s.model_dump() for s in pipeline]


def _links(state: ApiState, image_id: str) -> dict[str, str]:
    """The image's routes under ``DARKROOM_API_PUBLIC_URL`` (relative paths where it is empty)."""
    base = state.settings.api_public_url.rstrip("/")
    return {
        "status_url": base + router.url_path_for("get_image", image_id=image_id),
        "start_url": base + router.url_path_for("start_image", image_id=image_id),
    }


def _accepted(state: ApiState, row: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    body = {
        "id": row["id"],
        "status": state.images.view(row["tenant"], row["id"])["status"],
        "upload_event_id": row["upload_event_id"],
        "status_url": _links(state, row["id"])["status_url"],
    }
    return 202, body
