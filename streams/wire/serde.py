"""The one Avro serde: Confluent wire format with a registry, single-object encoding without.

Schemas come from ``schemas/<Name>.v<N>.avsc``; named types used by a record (``Step``,
``Output``…) are inlined where first referenced, so every record schema is standalone
(what a schema registry and fingerprints need). Writers always use the newest version;
readers accept any known version and resolve it to the newest (Avro schema resolution).
Anything that is neither framing, or that cannot be decoded, is ``UndecodableEvent``.
"""

from __future__ import annotations

import io
import itertools
import json
import re
import struct
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from processors.errors import ConfigurationError
from streams.config import Settings, mask_url
from streams.errors import AccessRefused, RegistryUnavailable, UndecodableEvent

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
SINGLE_OBJECT_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = b"\x00"
_FILE_RE = re.compile(r"^(?P<name>\w+)\.v(?P<version>\d+)\.avsc$")
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
R = TypeVar("R", bound=Mapping[str, Any])
"""The record a serde decodes to (``streams.wire.events`` has one ``TypedDict`` per schema)."""


@dataclass(frozen=True)
class RecordSchema:
    """One version of one record: standalone JSON schema, parsed form and fingerprint."""

    name: str
    version: int
    schema: dict[str, Any]
    parsed: Any
    fingerprint: bytes  # CRC-64-AVRO of the parsing canonical form, 8 bytes little-endian

    @property
    def json(self) -> str:
        return json.dumps(self.schema)


def _inline(node: Any, raw: dict[str, dict[str, Any]], namespace: str, seen: set[str]) -> Any:
    """Replace references to named types by their definition at first use."""
    if isinstance(node, str):
        if node in _PRIMITIVES:
            return node
        full = node if "." in node else f"{namespace}.{node}"
        if full in seen:
            return full
        if full not in raw:
            raise ConfigurationError(f"schema references unknown type {node!r}")
        seen.add(full)
        return _inline(raw[full], raw, namespace, seen)
    if isinstance(node, list):
        return [_inline(item, raw, namespace, seen) for item in node]
    if isinstance(node, dict):
        kind = node.get("type")
        if kind == "record":
            seen.add(f"{node.get('namespace', namespace)}.{node['name']}")
            fields = [{**f, "type": _inline(f["type"], raw, namespace, seen)} for f in node["fields"]]
            return {**node, "fields": fields}
        if kind == "array":
            return {**node, "items": _inline(node["items"], raw, namespace, seen)}
        if kind == "map":
            return {**node, "values": _inline(node["values"], raw, namespace, seen)}
        return {**node, "type": _inline(kind, raw, namespace, seen)} if isinstance(kind, (dict, list)) else node
    return node


def _references(schema: dict[str, Any], by_name: dict[str, list[dict[str, Any]]]) -> set[str]:
    """Full names of the named types a schema uses, directly or through other types."""
    found: set[str] = set()
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            full = node if "." in node else f"{schema['namespace']}.{node}"
            if full in by_name and full not in found:
                found.add(full)
                stack.extend(by_name[full])
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            stack.extend(node.get(k) for k in ("type", "items", "values") if k in node)
            stack.extend(f["type"] for f in node.get("fields", []))
    return found


class SchemaCatalog:
    """Every record schema version found in a directory of ``.avsc`` files."""

    def __init__(self, directory: Path = SCHEMA_DIR) -> None:
        files: dict[tuple[str, int], dict[str, Any]] = {}
        for path in sorted(directory.glob("*.avsc")):
            match = _FILE_RE.match(path.name)
            if not match:
                raise ConfigurationError(f"schema file {path.name} is not named <Name>.v<N>.avsc")
            files[(match["name"], int(match["version"]))] = json.loads(path.read_text())
        by_name: dict[str, list[dict[str, Any]]] = {}
        for (_, _), schema in sorted(files.items()):
            by_name.setdefault(f"{schema['namespace']}.{schema['name']}", []).append(schema)
        self._versions: dict[str, list[RecordSchema]] = {}
        self._by_fingerprint: dict[bytes, RecordSchema] = {}
        for (name, version), schema in sorted(files.items()):
            full = f"{schema['namespace']}.{name}"
            others = sorted(_references(schema, by_name) - {full})
            # A record version may have been written with any version of the types it
            # nests: recognise every combination, write with the newest one (last).
            for combo in itertools.product(*(by_name[n] for n in others)):
                raw = {**dict(zip(others, combo, strict=True)), full: schema}
                standalone = _inline(schema, raw, schema["namespace"], set())
                parsed = fastavro.parse_schema(standalone, named_schemas={})
                canonical = to_parsing_canonical_form(parsed)
                fp = bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))  # fastavro gives it little-endian
                record = RecordSchema(name, version, standalone, parsed, fp)
                self._by_fingerprint.setdefault(fp, record)
            self._versions.setdefault(name, []).append(record)

    def latest(self, name: str) -> RecordSchema:
        try:
            return self._versions[name][-1]
        except KeyError:
            raise ConfigurationError(f"no schema for record {name!r} in {SCHEMA_DIR}") from None

    def versions(self, name: str) -> list[RecordSchema]:
        self.latest(name)  # typed error for an unknown name
        return list(self._versions[name])

    def by_fingerprint(self, fp: bytes) -> RecordSchema | None:
        return self._by_fingerprint.get(fp)


@cache
def default_catalog() -> SchemaCatalog:
    return SchemaCatalog()


@contextmanager
def _registry_errors(url: str) -> Iterator[None]:
    """The schema registry's errors in darkroom's terms: not answering is an outage
    (``registry_unavailable``), never a reason to dead-letter a good record."""
    import httpx2
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    try:
        yield
    except SchemaRegistryError as exc:
        status = exc.http_status_code
        if status in (401, 403):
            raise AccessRefused(f"the schema registry refused darkroom's credentials (HTTP {status})") from None
        if status >= 500 or status in (408, 429) or status < 0:
            raise RegistryUnavailable(f"the schema registry answered HTTP {status}: {exc.error_message}") from None
        raise
    except (httpx2.TransportError, OSError) as exc:
        raise RegistryUnavailable(
            f"the schema registry at {mask_url(url)} is unreachable: {type(exc).__name__}"
        ) from None


def registry_config(settings: Settings) -> dict[str, str]:
    """The schema registry client's basic auth and CA (``DARKROOM_SCHEMA_REGISTRY_*``)."""
    conf: dict[str, str] = {}
    if settings.schema_registry_username:
        password = settings.schema_registry_password.get_secret_value()
        conf["basic.auth.user.info"] = f"{settings.schema_registry_username}:{password}"
    if settings.schema_registry_ca is not None:
        conf["ssl.ca.location"] = str(settings.schema_registry_ca)
    return conf


class Serde(Generic[R]):
    """Encode and decode one record type for one topic.

    With ``registry_url`` the writer produces the Confluent wire format through
    confluent-kafka's schema-registry serializer (``mock://…`` URLs give its in-memory
    registry); without, Avro single-object encoding. Decoding accepts both and resolves
    the writer's version to the reader's (defaults filled in), whose fields ``R`` names.
    """

    def __init__(
        self,
        record: str,
        *,
        registry_url: str = "",
        registry: Mapping[str, str] | None = None,
        catalog: SchemaCatalog | None = None,
        version: int | None = None,
    ) -> None:
        """``version`` pins the schema version this side reads and writes (default: newest);
        ``registry``: the registry client's further settings (``registry_config``).

        Single-object readers find the writer's schema by fingerprint in the catalog, so
        a reader reads newer records once their ``.avsc`` file is deployed, even while it
        still reads as an older version: roll schema files out before the writers.
        """
        self.catalog = catalog or default_catalog()
        versions = self.catalog.versions(record)
        self.reader = versions[-1] if version is None else next(v for v in versions if v.version == version)
        self.writer = self.reader
        self._registry_url = registry_url
        self._serializer: Any = None
        self._deserializer: Any = None
        if registry_url:
            from confluent_kafka.schema_registry import SchemaRegistryClient
            from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer

            client = SchemaRegistryClient.new_client({"url": registry_url, **(registry or {})})
            self._serializer = AvroSerializer(client, self.writer.json)
            self._deserializer = AvroDeserializer(client, self.reader.json)

    def encode(self, value: Mapping[str, Any], topic: str) -> bytes:
        if self._serializer is not None:
            from confluent_kafka.serialization import MessageField, SerializationContext

            with _registry_errors(self._registry_url):
                data: bytes = self._serializer(value, SerializationContext(topic, MessageField.VALUE))
            return data
        body = io.BytesIO()
        fastavro.schemaless_writer(body, self.writer.parsed, value)
        return SINGLE_OBJECT_MAGIC + self.writer.fingerprint + body.getvalue()

    def decode(self, data: bytes | None, topic: str) -> R:
        if not data:
            raise UndecodableEvent("empty record value")
        if data[:2] == SINGLE_OBJECT_MAGIC:
            return cast(R, self._decode_single_object(data))
        if data[:1] == CONFLUENT_MAGIC and len(data) >= 5:
            return cast(R, self._decode_confluent(data, topic))
        raise UndecodableEvent("not Avro: expected single-object encoding (C3 01) or Confluent wire format (00)")

    def _decode_single_object(self, data: bytes) -> dict[str, Any]:
        writer = self.catalog.by_fingerprint(data[2:10])
        if writer is None:
            raise UndecodableEvent(f"unknown schema fingerprint {data[2:10].hex()}")
        if writer.name != self.reader.name:
            raise UndecodableEvent(f"expected a {self.reader.name} record, got {writer.name}")
        try:
            value = fastavro.schemaless_reader(io.BytesIO(data[10:]), writer.parsed, self.reader.parsed)
        except Exception as exc:  # fastavro raises many unrelated types on corrupt bodies
            raise UndecodableEvent(f"corrupt {writer.name} body: {exc}") from exc
        return value  # type: ignore[return-value]

    def _decode_confluent(self, data: bytes, topic: str) -> dict[str, Any]:
        if self._deserializer is None:
            (schema_id,) = struct.unpack(">I", data[1:5])
            raise UndecodableEvent(f"Confluent wire format (schema id {schema_id}) but no schema registry configured")
        from confluent_kafka.serialization import MessageField, SerializationContext

        try:
            with _registry_errors(self._registry_url):
                value = self._deserializer(data, SerializationContext(topic, MessageField.VALUE))
        except (RegistryUnavailable, AccessRefused):
            raise  # an outage: the record is fine, the worker waits for the registry
        except Exception as exc:  # unknown schema id, corrupt body: the bytes cannot be decoded
            raise UndecodableEvent(f"cannot decode Confluent-framed record: {exc}") from exc
        if not isinstance(value, dict):
            raise UndecodableEvent("Confluent-framed record is not an Avro record")
        return value
