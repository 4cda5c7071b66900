"""Building the pipeline's records, their shapes, and every id and key derived for an upload.

Each record on the topics has one ``TypedDict`` here, field for field its schema's newest
version (``schemas/<Name>.v<N>.avsc``), and one builder: ``upload_event``, ``step_request``,
``completed``, ``failed``. Ids are UUIDv5 of the upload event id and the event's role, so a
redelivered or replayed upload yields the same step-request, completion and failure ids:
sinks deduplicate on them and webhooks keep one ``webhook-id``.
"""

from __future__ import annotations

import json
import re
import unicodedata
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, TypedDict, final

from processors.errors import DarkroomError
from streams.config import Settings
from streams.errors import BucketNotAllowed, InvalidImageId, InvalidObjectKey, InvalidTenant, ObjectMissing
from streams.wire.pipeline import Step
from streams.wire.serde import Serde, registry_config

FinalStatus = Literal["completed", "failed"]
_NAMESPACE = uuid.UUID("6f1d9a52-4d2e-4f0e-9a43-6d61726b726f")


@final
class Output(TypedDict):
    """One object a step wrote (``Output.v1``)."""

    step_index: int
    operation: str
    name: str
    """Rendition name, unique within the step."""
    bucket: str
    key: str
    size: int
    width: int
    height: int
    content_type: str
    sha256: str


@final
class StepTiming(TypedDict):
    """How one step ran (``StepTiming.v1``)."""

    step_index: int
    operation: str
    backend: str
    """What made the pixels, after any fallback."""
    details: dict[str, str]
    duration_ms: float
    reused: bool


@final
class UploadEvent(TypedDict):
    """A producer's request to process one stored image (``UploadEvent.v2``); built by ``upload_event``."""

    event_id: str
    image_id: str
    bucket: str
    key: str
    pipeline: list[Step]
    preset: str | None
    """Named pipeline, used when ``pipeline`` is empty."""
    callback_url: str | None
    tenant: str | None
    idempotency_key: str | None
    submitted_at: datetime
    replay_of: str | None
    """Event id of the original upload a replay re-drives; None for an original."""
    force: bool
    notify: bool


class _FromUpload(TypedDict):
    """The fields every record derived from an upload starts with, in every schema's order."""

    event_id: str
    """Derived from ``upload_event_id`` and the record's role (``derived_id``)."""
    upload_event_id: str
    image_id: str
    bucket: str
    source_key: str
    """The upload's ``key``."""


@final
class StepRequest(_FromUpload):
    """Work for one operation's consumer group (``StepRequest.v2``); built by ``step_request``."""

    pipeline: list[Step]
    step_index: int
    input_key: str
    outputs: list[Output]
    timings: list[StepTiming]
    callback_url: str | None
    tenant: str | None
    submitted_at: datetime
    replay_of: str | None
    force: bool
    notify: bool


@final
class ImageCompleted(_FromUpload):
    """The final success of one upload (``ImageCompleted.v2``); built by ``completed``."""

    pipeline: list[Step]
    outputs: list[Output]
    timings: list[StepTiming]
    callback_url: str | None
    tenant: str | None
    submitted_at: datetime
    completed_at: datetime
    replay_of: str | None
    notify: bool


@final
class ImageFailed(_FromUpload):
    """The final failure of one upload (``ImageFailed.v2``); built by ``failed``."""

    error_code: str
    message: str
    retryable: bool
    failed_step: str | None
    step_index: int | None
    outputs: list[Output]
    timings: list[StepTiming]
    callback_url: str | None
    tenant: str | None
    submitted_at: datetime
    failed_at: datetime
    replay_of: str | None
    notify: bool


FinalRecord = ImageCompleted | ImageFailed
"""What the completed and failed topics carry."""


IMAGE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
"""Image ids: 1–128 of ``A-Z a-z 0-9 . _ -``, starting with a letter or digit. The id is a
segment of every output key and a Kafka key, so no ``/``, no ``..`` segment, no spaces."""
TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""Tenants: 1–64 of ``A-Z a-z 0-9 . _ -``, starting with a letter or digit (as API keys name them)."""
MAX_KEY_BYTES = 1024
"""The longest object key S3 stores, in UTF-8 bytes."""
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_FILENAME = 100
"""Characters of a file name kept in its upload key."""
_CONTROL = frozenset({"Cc", "Zl", "Zp"})
"""Unicode categories no key may hold: controls (NUL included) and line or paragraph separators."""
_SPOOFING = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff")
"""Direction marks and overrides, and the byte-order mark: they make a key print as another
one (in a terminal, a log line). Other format characters (the joiners of emoji) are fine."""
_KEYS = ("key", "source_key", "input_key")
"""The fields of uploads and step requests that name objects to read."""
_STEP_OUTPUT = re.compile(r"\d{2,}-[A-Za-z0-9_-]+-[0-9a-f]{16}/[^/]+")
"""What follows ``image_prefix`` in an output's key: ``<step>-<operation>-<digest>/<file>``
(``step_dir``); nothing else under the output prefix (the API's orders) is an output."""


def check_source(source: Mapping[str, object], allowed_buckets: Collection[str]) -> None:
    """Refuse an upload or step request (or the ids one is about to get) whose image id,
    bucket, object keys or tenant darkroom must not use.

    Called before anything is read, so a producer cannot aim workers at another bucket
    their credentials reach (the broker's log, another team's), at keys outside the image's
    or at keys the store answers with errors of its own.
    """
    image_id, bucket = source.get("image_id"), source.get("bucket")
    if not isinstance(image_id, str) or not IMAGE_ID.fullmatch(image_id):
        raise InvalidImageId("image id must be 1-128 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit")
    if bucket not in allowed_buckets:
        raise BucketNotAllowed(f"bucket {bucket!r} is not in DARKROOM_ALLOWED_BUCKETS")
    for field in _KEYS:
        if field in source:
            check_key(source[field])
    check_tenant(source.get("tenant"))


def check_key(key: object) -> str:
    """``key`` if it is an object key darkroom reads: not empty, valid UTF-8 of at most
    ``MAX_KEY_BYTES`` bytes, without control characters (NUL included), line separators,
    direction marks, backslashes, ``.``/``..`` or empty segments; else ``InvalidObjectKey``.
    Stores differ on such keys (refuse them, normalise them to other objects), so darkroom
    never sends them."""
    if not isinstance(key, str) or not key:
        raise InvalidObjectKey("an object key must not be empty")
    shown = ascii(key[:120])
    try:
        size = len(key.encode())
    except UnicodeEncodeError:
        raise InvalidObjectKey(f"object key {shown} is not valid UTF-8") from None
    if size > MAX_KEY_BYTES:
        raise InvalidObjectKey(f"object key {shown}… is {size} bytes; the limit is {MAX_KEY_BYTES}")
    if any(unicodedata.category(char) in _CONTROL for char in key) or not _SPOOFING.isdisjoint(key):
        raise InvalidObjectKey(f"object key {shown} has a control, line-separator or direction character")
    if "\\" in key:
        raise InvalidObjectKey(f"object key {shown} has a backslash")
    segments = key.split("/")
    if not {".", ".."}.isdisjoint(segments):
        raise InvalidObjectKey(f"object key {shown} has a '.' or '..' segment")
    if "" in segments:
        raise InvalidObjectKey(f"object key {shown} has an empty segment (a leading, trailing or doubled '/')")
    return key


def check_tenant(tenant: object) -> str | None:
    """``tenant`` if it is None (no tenant) or a tenant name (``TENANT``); else ``InvalidTenant``.
    Tenants key subscriptions, replays and the API's images, so every door checks them."""
    if tenant is not None and not (isinstance(tenant, str) and TENANT.fullmatch(tenant)):
        raise InvalidTenant("a tenant is 1-64 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit")
    return tenant


def safe_filename(filename: str | None) -> str:
    """The part of an upload's key that names its file: the last segment of ``filename``
    (after ``/`` or ``\\``), every run of characters outside ``A-Z a-z 0-9 . _ -`` one ``_``,
    no leading dots (no hidden files, no ``..``), at most ``MAX_FILENAME`` characters;
    ``image`` when nothing is left. Applying it again changes nothing."""
    last = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    return _UNSAFE.sub("_", last).lstrip(".")[:MAX_FILENAME] or "image"


def upload_key(image_id: str, filename: str | None) -> str:
    """Where an upload's bytes are stored: ``uploads/<image id>/<safe_filename>``, by
    ``Client.submit`` and the HTTP API alike."""
    return f"uploads/{image_id}/{safe_filename(filename)}"


def derived_id(upload_event_id: str, role: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{upload_event_id}/{role}"))


def idempotent_event_id(tenant: str | None, idempotency_key: str) -> str:
    """The event id of an upload emitted with ``idempotency_key``: the same however often,
    and by whichever way, it is emitted (``Client.emit``, the notification ingest)."""
    return derived_id(f"idempotency/{tenant or ''}", idempotency_key)


def api_order_key(output_prefix: str, image_id: str) -> str:
    """Where the HTTP API keeps what an image it created is to become, beside the upload:
    the notification ingest reads it when the upload lands (under the output prefix, so
    its own notification starts nothing)."""
    return f"{output_prefix.strip('/')}/api-orders/{image_id}.json"


def api_order(read: Callable[[str], bytes], output_prefix: str, image_id: str) -> dict[str, Any] | None:
    """The HTTP API's order for ``image_id`` (``image_id``, ``tenant``, ``key``, ``pipeline``,
    ``callback_url``), read through ``read(key)`` (the caller's store, with its retries);
    None when the API did not create the image."""
    try:
        raw = read(api_order_key(output_prefix, image_id))
    except ObjectMissing:
        return None
    order: dict[str, Any] = json.loads(raw)
    return order


def image_prefix(output_prefix: str, image_id: str) -> str:
    """Where an image's outputs go: every step's directory is under it."""
    return f"{output_prefix}/{image_id}/"


def step_dir(step_index: int, operation: str, digest: str) -> str:
    """The directory of one step's outputs under ``image_prefix`` (``digest``: 16 hex digits)."""
    return f"{step_index:02d}-{operation}-{digest}/"


def is_output_of(key: str, output_prefix: str, image_id: str) -> bool:
    """Whether ``key`` can be an output of ``image_id``: a file in one of its step directories,
    without segments a store could resolve elsewhere."""
    prefix = image_prefix(output_prefix, image_id)
    try:
        check_key(key)
    except InvalidObjectKey:
        return False
    return key.startswith(prefix) and _STEP_OUTPUT.fullmatch(key[len(prefix) :]) is not None


def now() -> datetime:
    return datetime.now(UTC)


class Serdes:
    """One serde per record type, built once per process from the settings."""

    def __init__(self, settings: Settings) -> None:
        url, conf = settings.schema_registry_url, registry_config(settings)
        self.upload: Serde[UploadEvent] = Serde("UploadEvent", registry_url=url, registry=conf)
        self.step: Serde[StepRequest] = Serde("StepRequest", registry_url=url, registry=conf)
        self.completed: Serde[ImageCompleted] = Serde("ImageCompleted", registry_url=url, registry=conf)
        self.failed: Serde[ImageFailed] = Serde("ImageFailed", registry_url=url, registry=conf)


def upload_event(
    *,
    event_id: str,
    image_id: str,
    bucket: str,
    key: str,
    submitted_at: datetime,
    pipeline: Sequence[Step] = (),
    preset: str | None = None,
    callback_url: str | None = None,
    tenant: str | None = None,
    idempotency_key: str | None = None,
    replay_of: str | None = None,
    force: bool = False,
    notify: bool = True,
) -> UploadEvent:
    """An upload event, every field named; those with a default in the schema have it here.

    The one place uploads are built: ``Client.emit``, the notification ingest, replays and
    the HTTP API all call it, so the same inputs give the same record, byte for byte."""
    return {
        "event_id": event_id,
        "image_id": image_id,
        "bucket": bucket,
        "key": key,
        "pipeline": list(pipeline),
        "preset": preset,
        "callback_url": callback_url,
        "tenant": tenant,
        "idempotency_key": idempotency_key,
        "submitted_at": submitted_at,
        "replay_of": replay_of,
        "force": force,
        "notify": notify,
    }


def step_request(
    base: UploadEvent | StepRequest,
    *,
    upload_event_id: str,
    pipeline: Sequence[Step],
    step_index: int,
    input_key: str,
    outputs: Sequence[Output] = (),
    timings: Sequence[StepTiming] = (),
) -> StepRequest:
    """The request for ``pipeline[step_index]``; ``base`` is the upload or previous request.
    What a replay added to the upload (``replay_of``, ``force``, ``notify``) travels on."""
    return {
        "event_id": derived_id(upload_event_id, f"step/{step_index}"),
        "upload_event_id": upload_event_id,
        "image_id": base["image_id"],
        "bucket": base["bucket"],
        "source_key": base["source_key"] if "source_key" in base else base["key"],
        "pipeline": list(pipeline),
        "step_index": step_index,
        "input_key": input_key,
        "outputs": list(outputs),
        "timings": list(timings),
        "callback_url": base.get("callback_url"),
        "tenant": base.get("tenant"),
        "submitted_at": base["submitted_at"],
        "replay_of": base.get("replay_of"),
        "force": bool(base.get("force", False)),
        "notify": bool(base.get("notify", True)),
    }


def completed(request: StepRequest, outputs: Sequence[Output], timings: Sequence[StepTiming]) -> ImageCompleted:
    return {
        "event_id": derived_id(request["upload_event_id"], "completed"),
        "upload_event_id": request["upload_event_id"],
        "image_id": request["image_id"],
        "bucket": request["bucket"],
        "source_key": request["source_key"],
        "pipeline": request["pipeline"],
        "outputs": list(outputs),
        "timings": list(timings),
        "callback_url": request["callback_url"],
        "tenant": request["tenant"],
        "submitted_at": request["submitted_at"],
        "completed_at": now(),
        "replay_of": request.get("replay_of"),
        "notify": bool(request.get("notify", True)),
    }


def failed(
    base: UploadEvent | StepRequest,
    error: DarkroomError,
    *,
    upload_event_id: str,
    step_index: int | None,
    failed_step: str | None,
    outputs: Sequence[Output] = (),
    timings: Sequence[StepTiming] = (),
) -> ImageFailed:
    return {
        "event_id": derived_id(upload_event_id, "failed"),
        "upload_event_id": upload_event_id,
        "image_id": base["image_id"],
        "bucket": base["bucket"],
        "source_key": base["source_key"] if "source_key" in base else base["key"],
        "error_code": error.code,
        "message": error.message,
        "retryable": error.retryable,
        "failed_step": failed_step,
        "step_index": step_index,
        "outputs": list(outputs),
        "timings": list(timings),
        "callback_url": base.get("callback_url"),
        "tenant": base.get("tenant"),
        "submitted_at": base["submitted_at"],
        "failed_at": now(),
        "replay_of": base.get("replay_of"),
        "notify": bool(base.get("notify", True)),
    }
