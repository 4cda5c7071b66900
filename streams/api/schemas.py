"""The bodies the API reads and answers, as pydantic models, and their OpenAPI schemas.

Request fields are typed with the bounds of ``streams.api.limits``; the text fields of a
direct upload (``UploadFields``: multipart fields, or a raw body's query string) are the
fields of the JSON ``CreateImage`` too, except that JSON may give the pipeline as a list
of steps. The routes read ``CreateImage`` and ``Reprocess`` themselves (bounded, before
they are parsed), so FastAPI does not see them: ``components`` puts their schemas into
the document, and ``form_fields`` writes the multipart variant from ``UploadFields``.
"""

from __future__ import annotations

import types
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from streams.api.limits import Filename, Name, Text, Value
from streams.wire.pipeline import MAX_STEPS


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid")
    operation: Name
    params: dict[Name, Value] = {}


Steps = Annotated[list[Step], Field(json_schema_extra={"maxItems": MAX_STEPS})]
"""Bounded where every pipeline is, spec or list, from JSON or a preset: ``invalid_pipeline``
over ``MAX_STEPS`` (the body's size bounds what is parsed before that)."""
Pipeline = Annotated[
    Text | Steps | None,
    Field(
        description="A pipeline spec (`enhance,thumbnail:sizes=256+1024,format=webp`) or a list of steps",
        examples=["enhance,thumbnail:sizes=256+1024,format=webp"],
    ),
]


class CreateImage(BaseModel):
    """Exactly one of ``pipeline`` and ``preset``."""

    model_config = ConfigDict(extra="forbid")
    pipeline: Pipeline = None
    preset: Annotated[Name | None, Field(examples=["web"])] = None
    callback_url: Text | None = None
    filename: Filename | None = None


class UploadFields(CreateImage):
    """What a direct upload says beside its bytes, in text parts or a raw body's query string:
    ``CreateImage``'s fields, the pipeline as a spec. Other query parameters are ignored."""

    model_config = ConfigDict(extra="ignore")
    pipeline: Text | None = None


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


def ref(model: type[BaseModel]) -> dict[str, str]:
    """``model``'s schema in the document's components (put there by ``components``)."""
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def components(*models: type[BaseModel]) -> dict[str, Any]:
    """The schemas of ``models`` and of the models they use, for the document's components."""
    found: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        found.update({model.__name__: schema, **schema.pop("$defs", {})})
    return found


def form_fields(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s fields as the text parts of a multipart body: each one's schema without its ``None``."""
    return {name: TypeAdapter(_given(field.annotation)).json_schema() for name, field in model.model_fields.items()}


def _given(annotation: Any) -> Any:
    """``X`` for ``X | None``."""
    (given,) = (arg for arg in get_args(annotation) if arg is not types.NoneType)
    return given
