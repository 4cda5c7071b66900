"""Wire-format tests: single-object encoding, Confluent framing, schema evolution, other writers."""

from __future__ import annotations

import io
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import avro.io
import avro.schema
import pytest
from fastavro.schema import to_parsing_canonical_form

from streams.errors import UndecodableEvent
from streams.wire.serde import SCHEMA_DIR, SchemaCatalog, Serde

TOPIC = "images.uploaded"
UPLOAD_VERSION = max(int(p.name.split(".v")[1].split(".")[0]) for p in SCHEMA_DIR.glob("UploadEvent.v*.avsc"))


def upload_event(**overrides: object) -> dict[str, object]:
    event: dict[str, object] = {
        "event_id": "e-1",
        "image_id": "img-1",
        "bucket": "darkroom",
        "key": "uploads/img-1/a.jpg",
        "pipeline": [{"operation": "thumbnail", "params": {"sizes": "256"}}],
        "preset": None,
        "callback_url": "https://example.com/hook",
        "tenant": "acme",
        "idempotency_key": None,
        "submitted_at": datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
        "replay_of": None,
        "force": False,
        "notify": True,
    }
    event.update(overrides)
    return event


def test_single_object_encoding_layout_and_round_trip() -> None:
    serde = Serde("UploadEvent")
    data = serde.encode(upload_event(), TOPIC)
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == serde.writer.fingerprint
    assert serde.decode(data, TOPIC) == upload_event()


def _crc64_avro(data: bytes) -> bytes:
    """CRC-64-AVRO as the Avro specification writes it out, little-endian as on the wire."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp.to_bytes(8, "little")


@pytest.mark.parametrize("record", ["Step", "Output", "UploadEvent", "StepRequest", "ImageCompleted", "ImageFailed"])
def test_fingerprints_follow_the_specification(record: str) -> None:
    writer = Serde(record).writer
    canonical = to_parsing_canonical_form(writer.parsed)
    assert '"logicalType"' not in canonical and '"doc"' not in canonical
    assert writer.fingerprint == _crc64_avro(canonical.encode())


def test_fingerprint_matches_the_apache_avro_package() -> None:
    # Apache avro's Python canonical form keeps {"type":"long"} for logical types, against
    # the spec's [PRIMITIVES] rule, so compare on a record without logical types.
    writer = Serde("Output").writer
    assert avro.schema.parse(writer.json).fingerprint("CRC-64-AVRO") == writer.fingerprint


def _apache_avro_body(schema_json: str, datum: dict[str, object]) -> bytes:
    body = io.BytesIO()
    avro.io.DatumWriter(avro.schema.parse(schema_json)).write(datum, avro.io.BinaryEncoder(body))
    return body.getvalue()


def test_bodies_written_by_the_apache_avro_package_decode() -> None:
    serde = Serde("UploadEvent")
    framed = b"\xc3\x01" + serde.writer.fingerprint + _apache_avro_body(serde.writer.json, upload_event())
    assert serde.decode(framed, TOPIC) == upload_event()


def test_confluent_wire_format_through_the_schema_registry_serializer() -> None:
    # mock:// is confluent-kafka's own in-memory registry client.
    serde = Serde("UploadEvent", registry_url="mock://darkroom-test")
    data = serde.encode(upload_event(), TOPIC)
    assert data[0] == 0 and len(data) > 5
    assert serde.decode(data, TOPIC)["image_id"] == "img-1"
    # A decoder without a registry still reads single-object records and names the problem.
    plain = Serde("UploadEvent")
    assert serde.decode(plain.encode(upload_event(), TOPIC), TOPIC)["event_id"] == "e-1"
    with pytest.raises(UndecodableEvent, match="no schema registry"):
        plain.decode(data, TOPIC)
    # Confluent framing around a body from the Apache avro package decodes too.
    foreign = data[:5] + _apache_avro_body(serde.writer.json, upload_event(image_id="img-2"))
    assert serde.decode(foreign, TOPIC)["image_id"] == "img-2"


@pytest.mark.parametrize(
    "garbage",
    [b"", b"hello world", b"\xc3\x01" + b"\x00" * 8 + b"xx", b"\x00\x00"],
)
def test_garbage_is_a_typed_error(garbage: bytes) -> None:
    with pytest.raises(UndecodableEvent) as info:
        Serde("UploadEvent").decode(garbage, TOPIC)
    assert info.value.code == "undecodable_event"


def test_corrupt_body_with_a_known_fingerprint_is_a_typed_error() -> None:
    serde = Serde("UploadEvent")
    data = serde.encode(upload_event(), TOPIC)
    with pytest.raises(UndecodableEvent):
        serde.decode(data[:14], TOPIC)


def test_a_record_of_another_type_is_rejected() -> None:
    failed = Serde("StepRequest")
    with pytest.raises(UndecodableEvent, match="expected a UploadEvent"):
        Serde("UploadEvent").decode(failed.encode(_step_request(), TOPIC), TOPIC)


def _step_request() -> dict[str, object]:
    return {
        "event_id": "s",
        "upload_event_id": "e",
        "image_id": "i",
        "bucket": "b",
        "source_key": "k",
        "pipeline": [],
        "step_index": 0,
        "input_key": "k",
        "submitted_at": datetime(2026, 1, 1, tzinfo=UTC),
    }


@pytest.fixture
def evolved_catalogs(tmp_path: Path) -> tuple[SchemaCatalog, SchemaCatalog]:
    """Today's catalog, and a newer one whose next UploadEvent version adds a field with a default."""
    old_dir, new_dir = tmp_path / "old", tmp_path / "new"
    shutil.copytree(SCHEMA_DIR, old_dir)
    shutil.copytree(SCHEMA_DIR, new_dir)
    current = json.loads((SCHEMA_DIR / f"UploadEvent.v{UPLOAD_VERSION}.avsc").read_text())
    newer = {**current, "fields": [*current["fields"], {"name": "priority", "type": "int", "default": 5}]}
    (new_dir / f"UploadEvent.v{UPLOAD_VERSION + 1}.avsc").write_text(json.dumps(newer))
    return SchemaCatalog(old_dir), SchemaCatalog(new_dir)


def test_new_reader_reads_old_writer(evolved_catalogs: tuple[SchemaCatalog, SchemaCatalog]) -> None:
    old, new = evolved_catalogs
    data = Serde("UploadEvent", catalog=old).encode(upload_event(), TOPIC)
    decoded = Serde("UploadEvent", catalog=new).decode(data, TOPIC)
    assert decoded["priority"] == 5
    assert decoded["image_id"] == "img-1"


def test_old_reader_reads_new_writer_when_it_knows_the_new_schema(
    evolved_catalogs: tuple[SchemaCatalog, SchemaCatalog],
) -> None:
    _, new = evolved_catalogs
    data = Serde("UploadEvent", catalog=new).encode(upload_event(priority=9), TOPIC)
    old_reader = Serde("UploadEvent", catalog=new, version=UPLOAD_VERSION)  # a deployment not upgraded yet
    decoded = old_reader.decode(data, TOPIC)
    assert "priority" not in decoded
    assert decoded == upload_event()


def test_every_schema_file_parses_and_has_defaults_for_optional_fields() -> None:
    catalog = SchemaCatalog()
    for name in ("UploadEvent", "StepRequest", "ImageCompleted", "ImageFailed"):
        schema = catalog.latest(name).schema
        for field in schema["fields"]:
            if isinstance(field["type"], list) and "null" in field["type"]:
                assert "default" in field, f"{name}.{field['name']} is nullable without a default"


def test_uploads_from_producers_on_v1_read_as_originals() -> None:
    """v2 added the replay fields with defaults: a producer still writing v1 keeps working."""
    v1_fields = {"replay_of", "force", "notify"}
    old = {k: v for k, v in upload_event().items() if k not in v1_fields}
    data = Serde("UploadEvent", version=1).encode(old, TOPIC)
    decoded = Serde("UploadEvent").decode(data, TOPIC)
    assert decoded == upload_event()
    assert (decoded["replay_of"], decoded["force"], decoded["notify"]) == (None, False, True)
