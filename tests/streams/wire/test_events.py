"""The records' builders and shapes, and upload keys: one of each, checked against the schemas."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import avro.io
import avro.schema
import pytest
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

from processors.errors import ProcessingFailed
from streams.errors import InvalidObjectKey, InvalidTenant, ObjectMissing
from streams.wire import events
from streams.wire.events import (
    ImageCompleted,
    ImageFailed,
    Output,
    StepRequest,
    StepTiming,
    UploadEvent,
    safe_filename,
    upload_event,
    upload_key,
)
from streams.wire.serde import Serde

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"
TOPIC = "images.uploaded"
WHEN = datetime(2026, 11, 30, 10, 0, 5, 678901, tzinfo=UTC)  # microseconds: the wire keeps milliseconds


def _schema(name: str) -> dict[str, Any]:
    """The newest version of a record's schema, as its file has it."""
    newest = max(SCHEMAS.glob(f"{name}.v*.avsc"), key=lambda p: int(p.name.split(".v")[1].split(".")[0]))
    schema: dict[str, Any] = json.loads(newest.read_text())
    return schema


def _fields(name: str) -> list[str]:
    return [f["name"] for f in _schema(name)["fields"]]


def _expected_upload_bytes(datum: dict[str, Any]) -> bytes:
    """What an UploadEvent with ``datum``'s fields is on the wire, computed without darkroom:
    the body by the Apache ``avro`` package, the single-object header from the schema's
    parsing canonical form (``Step`` inlined where it is used, as the specification wants)."""
    step, upload = _schema("Step"), _schema("UploadEvent")
    names = avro.schema.Names()
    avro.schema.make_avsc_object(step, names)
    body = io.BytesIO()
    avro.io.DatumWriter(avro.schema.make_avsc_object(upload, names)).write(datum, avro.io.BinaryEncoder(body))
    inlined = {
        **upload,
        "fields": [
            {**f, "type": {**f["type"], "items": step}} if f["name"] == "pipeline" else f for f in upload["fields"]
        ],
    }
    canonical = to_parsing_canonical_form(parse_schema(inlined, named_schemas={}))
    return b"\xc3\x01" + bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO")) + body.getvalue()


def _with_defaults(literal: dict[str, Any]) -> dict[str, Any]:
    """A record as the writer wrote the dict literals the builders replaced: the fields they
    left out take the schema's defaults (replay_of, force, notify)."""
    defaults = {f["name"]: f["default"] for f in _schema("UploadEvent")["fields"] if "default" in f}
    return {**{k: v for k, v in defaults.items() if k not in literal}, **literal}


STEPS = [{"operation": "thumbnail", "params": {"sizes": "256+1024", "format": "webp"}}]


def test_the_typed_records_are_their_schemas_field_for_field() -> None:
    for record, name in [
        (UploadEvent, "UploadEvent"),
        (StepRequest, "StepRequest"),
        (ImageCompleted, "ImageCompleted"),
        (ImageFailed, "ImageFailed"),
        (Output, "Output"),
        (StepTiming, "StepTiming"),
    ]:
        assert list(record.__annotations__) == _fields(name), name
        assert record.__required_keys__ == frozenset(_fields(name)), name


def test_the_upload_builder_sets_every_field_of_the_schema() -> None:
    event = upload_event(
        event_id="e-1",
        image_id="img-1",
        bucket="darkroom",
        key="uploads/img-1/a.jpg",
        pipeline=STEPS,
        preset="web",
        callback_url="https://hooks.example.com/cb",
        tenant="acme",
        idempotency_key="k-1",
        submitted_at=WHEN,
        replay_of="e-0",
        force=True,
        notify=False,
    )
    assert list(event) == _fields("UploadEvent")
    assert event == {
        "event_id": "e-1",
        "image_id": "img-1",
        "bucket": "darkroom",
        "key": "uploads/img-1/a.jpg",
        "pipeline": STEPS,
        "preset": "web",
        "callback_url": "https://hooks.example.com/cb",
        "tenant": "acme",
        "idempotency_key": "k-1",
        "submitted_at": WHEN,
        "replay_of": "e-0",
        "force": True,
        "notify": False,
    }
    assert event["pipeline"] is not STEPS  # its own list: later edits of the caller's do not travel
    assert Serde("UploadEvent").encode(event, TOPIC) == _expected_upload_bytes(event)


def test_the_builders_defaults_are_the_schemas() -> None:
    event = upload_event(event_id="e", image_id="i", bucket="b", key="k", submitted_at=WHEN)
    defaults = {f["name"]: f["default"] for f in _schema("UploadEvent")["fields"] if "default" in f}
    assert {k: v for k, v in event.items() if k in defaults} == defaults


@pytest.mark.parametrize(
    "literal",
    [
        # what Client.emit wrote
        {
            "event_id": "9b1f7c1e-2a47-5b1c-8f0e-2f0c5a0f3d11",
            "image_id": "9b1f7c1e2a475b1c8f0e",
            "bucket": "darkroom",
            "key": "uploads/9b1f7c1e2a475b1c8f0e/photo.jpg",
            "pipeline": STEPS,
            "preset": None,
            "callback_url": "https://hooks.example.com/cb",
            "tenant": "acme",
            "idempotency_key": "import-0001",
            "submitted_at": WHEN,
        },
        # what the notification ingest wrote for a rule naming a preset
        {
            "event_id": "n-1",
            "image_id": "obj-0123456789abcdef0123456789abcdef",
            "bucket": "darkroom",
            "key": "incoming/summer photos/café.jpg",
            "pipeline": [],
            "preset": "catalog",
            "callback_url": None,
            "tenant": "shop",
            "idempotency_key": None,
            "submitted_at": WHEN,
        },
    ],
)
def test_the_builder_writes_the_bytes_the_dict_literals_wrote(literal: dict[str, Any]) -> None:
    built = upload_event(**literal)
    expected = _expected_upload_bytes(_with_defaults(literal))
    assert Serde("UploadEvent").encode(built, TOPIC) == expected
    assert Serde("UploadEvent").encode(literal, TOPIC) == expected  # the old path, for the record


def test_every_builder_sets_exactly_its_schemas_fields() -> None:
    upload = upload_event(event_id="u", image_id="i", bucket="b", key="uploads/i/a.jpg", submitted_at=WHEN)
    request = events.step_request(upload, upload_event_id="u", pipeline=STEPS, step_index=0, input_key=upload["key"])
    assert list(request) == _fields("StepRequest")
    assert request["source_key"] == "uploads/i/a.jpg"
    assert list(events.completed(request, [], [])) == _fields("ImageCompleted")
    failure = events.failed(request, ProcessingFailed("x"), upload_event_id="u", step_index=0, failed_step="thumbnail")
    assert list(failure) == _fields("ImageFailed")
    rejected = events.failed(upload, ProcessingFailed("x"), upload_event_id="u", step_index=None, failed_step=None)
    assert list(rejected) == _fields("ImageFailed") and rejected["source_key"] == upload["key"]


def test_replay_fields_travel_from_the_upload_to_the_final_events() -> None:
    upload = upload_event(
        event_id="u2", image_id="i", bucket="b", key="k", submitted_at=WHEN, replay_of="u1", force=True, notify=False
    )
    request = events.step_request(upload, upload_event_id="u2", pipeline=STEPS, step_index=0, input_key="k")
    assert (request["replay_of"], request["force"], request["notify"]) == ("u1", True, False)
    nxt = events.step_request(request, upload_event_id="u2", pipeline=STEPS, step_index=1, input_key="o")
    assert (nxt["source_key"], nxt["replay_of"], nxt["force"], nxt["notify"]) == ("k", "u1", True, False)
    done = events.completed(nxt, [], [])
    assert (done["replay_of"], done["notify"]) == ("u1", False)


@pytest.mark.parametrize(
    ("filename", "name"),
    [
        ("photo.jpg", "photo.jpg"),
        ("My Photo (1).JPG", "My_Photo_1_.JPG"),  # spaces and brackets: one _ per run
        ("a  +  b%20c.png", "a_b_20c.png"),
        ("café.jpg", "caf_.jpg"),  # unicode
        ("写真 1.png", "_1.png"),
        ("../../etc/passwd", "passwd"),  # only the last segment
        ("C:\\Users\\me\\photo.jpg", "photo.jpg"),  # Windows paths too
        ("photos/", "image"),  # a directory names no file
        (".env", "env"),  # no hidden files
        ("...", "image"),
        ("..", "image"),
        ("", "image"),
        (None, "image"),
        ("-rf.jpg", "-rf.jpg"),
        ("a" * 300 + ".jpg", "a" * 100),  # at most MAX_FILENAME characters
    ],
)
def test_upload_keys(filename: str | None, name: str) -> None:
    assert safe_filename(filename) == name
    assert upload_key("img-1", filename) == f"uploads/img-1/{name}"
    assert safe_filename(name) == name  # sanitizing a sanitized name changes nothing
    assert len(name) <= events.MAX_FILENAME and not name.startswith(".")
    events.check_key(upload_key("img-1", filename))  # every upload key is one workers read


@pytest.mark.parametrize(
    "key",
    [
        "uploads/img-1/photo.jpg",
        "incoming/summer photos/café a+b 100%.jpg",  # spaces, +, %, unicode: S3 keys as users name them
        "写真/" + "é" * 508,  # 1,023 bytes of UTF-8
        "k" * 1024,
        "a..b/...jpg/.hidden",  # dots inside a segment are names, not paths
        "uploads/\U0001f468\u200d\U0001f469\u200d\U0001f467.jpg",  # joiners of an emoji family are fine
    ],
)
def test_keys_darkroom_reads(key: str) -> None:
    assert events.check_key(key) == key


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("", "empty"),
        (None, "empty"),
        ("uploads/x\\..\\y.png", "backslash"),  # the store refuses it (InvalidRequest)
        ("uploads\\x.png", "backslash"),
        ("uploads/x\x00y.png", "control"),  # NUL
        ("uploads/x\ny.png", "control"),
        ("uploads/x\x7f", "control"),
        ("uploads/x\x85", "control"),  # C1
        ("uploads/../img-2/photo.jpg", "segment"),
        ("./uploads/x.jpg", "segment"),
        ("uploads/x/..", "segment"),
        ("uploads//double/slash", "empty segment"),  # stores that collapse it read another object
        ("/uploads/x.jpg", "empty segment"),
        ("uploads/x/", "empty segment"),
        ("uploads/x\u202egpj.exe", "direction"),  # prints as uploads/xexe.jpg
        ("uploads/x\u2028y.png", "line-separator"),
        ("uploads/\ufeffx.png", "direction"),
        ("k" * 1025, "1025 bytes"),
        ("é" * 513, "1026 bytes"),  # bytes, not characters, count
        ("uploads/\udcff.jpg", "not valid UTF-8"),  # a lone surrogate has no UTF-8
    ],
)
def test_keys_darkroom_refuses(key: object, why: str) -> None:
    with pytest.raises(InvalidObjectKey, match=why) as info:
        events.check_key(key)
    assert info.value.code == "invalid_object_key" and not info.value.retryable
    assert "\x00" not in info.value.message and "\n" not in info.value.message  # quoted, fit for a header


@pytest.mark.parametrize("tenant", [None, "acme", "A", "shop-eu.2_b", "t" * 64])
def test_tenants_darkroom_takes(tenant: str | None) -> None:
    assert events.check_tenant(tenant) == tenant


@pytest.mark.parametrize("tenant", ["", " acme", "a b", "../acme", "-acme", ".acme", "acmé", "t" * 65, "acme\n", 7])
def test_tenants_darkroom_refuses(tenant: object) -> None:
    with pytest.raises(InvalidTenant) as info:
        events.check_tenant(tenant)
    assert info.value.code == "invalid_tenant"


def test_check_source_checks_every_key_and_the_tenant_it_is_given() -> None:
    good = {"image_id": "i1", "bucket": "b", "key": "k", "source_key": "s", "input_key": "i", "tenant": "t"}
    events.check_source(good, {"b"})
    for field in ("key", "source_key", "input_key"):
        with pytest.raises(InvalidObjectKey):
            events.check_source({**good, field: "a/../b"}, {"b"})
    with pytest.raises(InvalidTenant):
        events.check_source({**good, "tenant": "a b"}, {"b"})
    events.check_source({"image_id": "i1", "bucket": "b"}, {"b"})  # what is not given is not checked


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("derived/img-1/00-thumbnail-0123456789abcdef/thumb-256.webp", True),
        ("derived/img-1/12-upscale-0123456789abcdef/manifest.json", True),
        ("derived/img-1x/00-thumbnail-0123456789abcdef/thumb-256.webp", False),  # another image
        ("derived/img/00-thumbnail-0123456789abcdef/thumb-256.webp", False),
        ("uploads/img-1/photo.jpg", False),  # an upload, not an output
        ("derived/img-1/00-thumbnail-0123456789abcdef/../../img-2/00-thumbnail-0123456789abcdef/a.webp", False),
        ("derived/img-1/thumb-256.webp", False),  # not in a step directory
        ("derived/img-1/00-thumbnail-0123456789abcdef/sub/thumb.webp", False),
        ("derived/api-orders/img-1.json", False),
        ("clusters/1/topics/x", False),
    ],
)
def test_outputs_are_files_in_their_images_step_directories(key: str, ok: bool) -> None:
    assert events.is_output_of(key, "derived", "img-1") is ok
    assert events.image_prefix("derived", "img-1") + events.step_dir(0, "thumbnail", "0" * 16) + "a.webp"


def test_an_api_order_is_read_through_the_callers_reader_and_none_when_missing() -> None:
    stored = {"derived/api-orders/img-1.json": json.dumps({"tenant": "acme", "key": "uploads/img-1/a.jpg"}).encode()}

    def read(key: str) -> bytes:
        if key not in stored:
            raise ObjectMissing(key)
        return stored[key]

    assert events.api_order(read, "derived", "img-1") == {"tenant": "acme", "key": "uploads/img-1/a.jpg"}
    assert events.api_order(read, "derived/", "img-1") is not None  # the prefix as configured, slash or not
    assert events.api_order(read, "derived", "img-2") is None
