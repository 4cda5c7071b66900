"""Request bodies, bounded before and while they are read, and parsed into darkroom's errors.

A body is refused with ``413 file_too_large`` as soon as it is known to be too large:
from ``Content-Length`` before anything is read, and while it streams in otherwise.
JSON that does not parse is ``400 invalid_request``; a document that does not validate
is ``422 invalid_parameters`` with the fields' errors, as FastAPI answers for the
parameters it checks itself. An image's bytes are refused with 415 unless they are an
image: ``unsupported_media_type`` for a Content-Type other than ``image/…``,
``not_an_image`` for bytes no image reader of darkroom identifies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile

from processors.errors import DarkroomError, NotAnImage
from processors.image import open_image
from processors.operation import Limits
from streams.api.images import safe_filename
from streams.api.limits import MAX_FORM_FIELDS, MAX_JSON_BYTES, MULTIPART_OVERHEAD_BYTES
from streams.api.problems import ApiProblem

_Model = TypeVar("_Model", bound=BaseModel)


async def read(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to be over ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise ApiProblem("invalid_request", "Content-Length is not a number")
        if int(declared) > limit:
            raise ApiProblem("file_too_large", f"the body is {declared} bytes; the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiProblem("file_too_large", f"the body is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def parsed(raw: bytes) -> Any:
    """The JSON document in ``raw``; 400 when there is none."""
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiProblem("invalid_request", "the body is not JSON") from None


def validated(model: type[_Model], doc: Any) -> _Model:
    """``doc`` as ``model``; 422 with the fields' errors (never their input) otherwise."""
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_input=False)) from None


def media_type(content_type: str | None) -> str:
    """``image/jpeg`` for ``Image/JPEG; q=1``; empty for none."""
    return (content_type or "").split(";")[0].strip().lower()


def image_type(content_type: str | None, what: str) -> str:
    """The media type of ``content_type`` (``what`` the caller sent) if it is an image type; else 415."""
    media = media_type(content_type)
    if not media.startswith("image/"):
        raise ApiProblem(
            "unsupported_media_type",
            f"{what} is {media or 'missing'}: send an image with its type (image/jpeg, image/png, …)",
        )
    return media


def image(data: bytes, limits: Limits) -> None:
    """Refuse (``not_an_image``, 415) bytes that no image reader of darkroom identifies, read
    from their header as the operations open their input (``processors.image.open_image``:
    Pillow's readers by their magic bytes, HEIF included). An image that is damaged or over
    a limit passes: its pipeline fails it with the code saying so, as any producer's upload."""
    try:
        open_image(data, limits).close()
    except NotAnImage:
        raise
    except DarkroomError:
        return


@dataclass(frozen=True)
class Form:
    """A multipart body: its one file and its text fields."""

    fields: dict[str, str]
    data: bytes
    content_type: str | None
    """The file part's, as sent (None: it had none)."""
    filename: str | None
    """The file part's filename, made safe; None when the part was a text field."""


async def multipart(request: Request, max_file: int) -> Form:
    """The multipart body: a ``file`` part of at most ``max_file`` bytes and up to
    ``MAX_FORM_FIELDS`` text fields; a malformed body is 400 (Starlette's parser)."""
    body = await read(request, max_file + MULTIPART_OVERHEAD_BYTES)

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    form = Request(request.scope, replay).form(max_files=1, max_fields=MAX_FORM_FIELDS, max_part_size=MAX_JSON_BYTES)
    async with form as parts:
        upload = parts.get("file")
        if upload is None:
            raise ApiProblem("invalid_parameters", "multipart body without a `file` part")
        fields: dict[str, str] = {}
        for name, value in parts.multi_items():
            if name == "file":
                continue
            if not isinstance(value, str):
                raise ApiProblem("invalid_parameters", f"{name} must be a text field, not a file")
            fields[name] = value
        if isinstance(upload, UploadFile):
            data, ctype = await upload.read(), upload.content_type
            filename: str | None = safe_filename(upload.filename)
        else:
            data, ctype, filename = upload.encode(), None, None
    if len(data) > max_file:
        raise ApiProblem("file_too_large", f"the file is over the {max_file}-byte limit")
    return Form(fields, data, ctype, filename)
