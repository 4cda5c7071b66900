"""The handlers on the in-memory store (tests/fakes.py): ingest and the operation step,
without a broker. Through Kafka and S3 they run in test_end_to_end.py and test_boundaries.py."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog

from processors import get_operation
from streams.config import Settings
from streams.dev.samples import photo_jpeg
from streams.errors import StorageUnavailable, UndecodableEvent, UploadMismatch
from streams.handlers.steps import MANIFEST, Ingest, OperationStep
from streams.wire import pipeline
from streams.wire.events import Serdes, StepRequest, UploadEvent, api_order_key, step_request, upload_event
from tests.fakes import MemoryStore

LOG = structlog.get_logger("test")
BUCKET = "darkroom"


@pytest.fixture
def settings(tmp_path: Any) -> Settings:
    return Settings(home=tmp_path, storage_attempts=1)


def _request(spec: str, key: str = "uploads/i1/p.jpg", index: int = 0) -> StepRequest:
    steps = pipeline.parse_spec(spec)
    upload = upload_event(
        event_id="e1", image_id="i1", bucket=BUCKET, key=key, submitted_at=datetime(2026, 1, 1, tzinfo=UTC)
    )
    return step_request(upload, upload_event_id="e1", pipeline=steps, step_index=index, input_key=key)


def _step(settings: Settings, store: MemoryStore, name: str = "thumbnail") -> OperationStep:
    return OperationStep(settings, Serdes(settings), store, get_operation(name))


def _decoded(settings: Settings, record: Any) -> dict[str, Any]:
    serdes = Serdes(settings)
    topic = record.topic
    serde = serdes.completed if topic.endswith("completed") else serdes.failed if "failed" in topic else serdes.step
    return dict(serde.decode(record.value, topic))


def test_a_step_writes_its_outputs_then_its_manifest_and_a_redelivery_reuses_them(settings: Settings) -> None:
    store = MemoryStore()
    store.put(BUCKET, "uploads/i1/p.jpg", photo_jpeg(640, 480, seed=1))
    step = _step(settings, store)
    (record,) = step(_request("thumbnail:sizes=64+128"), LOG)
    done = _decoded(settings, record)
    assert record.topic == settings.topic("images.completed") and record.key == "i1"
    outputs = done["outputs"]
    assert [(o["width"], o["height"]) for o in outputs] == [(64, 48), (128, 96)]
    for output in outputs:  # each output is where the event says, with the bytes it describes
        stored = store.get(BUCKET, output["key"])
        assert hashlib.sha256(stored).hexdigest() == output["sha256"] and len(stored) == output["size"]
    puts = [key for op, key in store.calls if op == "put"]
    assert puts[-1].endswith(MANIFEST) and len(puts) == 1 + len(outputs) + 1  # input, outputs, manifest last
    (again,) = _step(settings, store)(_request("thumbnail:sizes=64+128"), LOG)  # a redelivery
    assert _decoded(settings, again)["outputs"] == outputs
    assert [key for op, key in store.calls if op == "put"] == puts  # nothing written twice
    assert _decoded(settings, again)["timings"][0]["reused"] is True


def test_a_step_that_is_not_the_last_asks_for_the_next_on_its_first_output(settings: Settings) -> None:
    store = MemoryStore()
    store.put(BUCKET, "uploads/i1/p.jpg", photo_jpeg(320, 240, seed=2))
    (record,) = _step(settings, store, "enhance")(_request("enhance,thumbnail:sizes=32"), LOG)
    nxt = _decoded(settings, record)
    assert record.topic == settings.topic("images.step.thumbnail")
    assert nxt["step_index"] == 1 and nxt["input_key"] == nxt["outputs"][0]["key"]


def test_a_missing_input_fails_the_image_and_an_unreachable_store_pauses_instead(settings: Settings) -> None:
    store = MemoryStore()
    (record,) = _step(settings, store)(_request("thumbnail:sizes=32", key="uploads/i1/gone.jpg"), LOG)
    failed = _decoded(settings, record)
    assert record.topic == settings.topic("images.failed")
    assert (failed["error_code"], failed["failed_step"], failed["retryable"]) == ("object_missing", "thumbnail", False)
    store.down = True
    with pytest.raises(StorageUnavailable):  # raised to the loop, which pauses: the image is not failed
        _step(settings, store)(_request("thumbnail:sizes=32"), LOG)


def test_an_object_with_other_bytes_under_an_output_key_is_kept_and_described(settings: Settings) -> None:
    store = MemoryStore()
    store.put(BUCKET, "uploads/i1/p.jpg", photo_jpeg(320, 240, seed=3))
    first = _decoded(settings, _step(settings, store)(_request("thumbnail:sizes=32"), LOG)[0])["outputs"][0]
    (manifest_key,) = [key for (_, key) in store.objects if key.endswith(MANIFEST)]
    del store.objects[(BUCKET, manifest_key)]  # the step crashed after its outputs, before its manifest
    store.objects[(BUCKET, first["key"])] = (b"other bytes", "image/jpeg", {})
    again = _decoded(settings, _step(settings, store)(_request("thumbnail:sizes=32"), LOG)[0])["outputs"][0]
    assert store.get(BUCKET, first["key"]) == b"other bytes"  # never replaced
    assert (again["sha256"], again["size"]) == (hashlib.sha256(b"other bytes").hexdigest(), len(b"other bytes"))


def test_ingest_hands_a_valid_upload_to_its_first_operation_and_fails_a_bad_one(settings: Settings) -> None:
    ingest = Ingest(settings, Serdes(settings), MemoryStore())
    upload = upload_event(
        event_id="e2",
        image_id="i2",
        bucket=BUCKET,
        key="uploads/i2/p.jpg",
        submitted_at=datetime(2026, 1, 1, tzinfo=UTC),
        pipeline=pipeline.parse_spec("enhance,thumbnail"),
    )
    (record,) = ingest(upload, LOG)
    assert record.topic == settings.topic("images.step.enhance")
    assert json.loads(json.dumps(_decoded(settings, record)["pipeline"], default=str))[1]["operation"] == "thumbnail"
    (refused,) = ingest({**upload, "bucket": "elsewhere"}, LOG)
    assert record.key == refused.key == "i2"
    assert _decoded(settings, refused)["error_code"] == "bucket_not_allowed"


def _upload(**fields: Any) -> UploadEvent:
    given: dict[str, Any] = {
        "event_id": "e3",
        "image_id": "i3",
        "bucket": BUCKET,
        "key": "uploads/i3/p.jpg",
        "tenant": "acme",
        "submitted_at": datetime(2026, 1, 1, tzinfo=UTC),
        "pipeline": pipeline.parse_spec("thumbnail"),
        **fields,
    }
    return upload_event(**given)


def _api_order(store: MemoryStore, settings: Settings, image_id: str, tenant: str | None, key: str) -> None:
    """The order the HTTP API writes beside an image it creates (``Images.create``)."""
    order = {"image_id": image_id, "tenant": tenant, "key": key, "pipeline": [], "callback_url": None}
    store.put(settings.bucket, api_order_key(settings.output_prefix, image_id), json.dumps(order).encode())


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"key": "uploads/x\\..\\y.png"}, "invalid_object_key"),
        ({"key": "uploads/x\x00y.png"}, "invalid_object_key"),
        ({"key": "uploads/../i3/p.jpg"}, "invalid_object_key"),
        ({"key": ""}, "invalid_object_key"),
        ({"key": "k" * 1025}, "invalid_object_key"),
        ({"tenant": "a b"}, "invalid_tenant"),
        ({"tenant": "../acme"}, "invalid_tenant"),
    ],
)
def test_ingest_fails_keys_and_tenants_it_must_not_use_before_any_read(
    settings: Settings, fields: dict[str, Any], code: str
) -> None:
    store = MemoryStore()
    (refused,) = Ingest(settings, Serdes(settings), store)(_upload(**fields), LOG)
    failure = _decoded(settings, refused)
    assert refused.topic == settings.topic("images.failed")
    assert (failure["error_code"], failure["retryable"]) == (code, False)
    assert store.calls == []  # refused before anything was read


def test_an_upload_of_an_image_the_api_created_must_carry_its_tenant_and_key(settings: Settings) -> None:
    """Refused while decoding, as an undecodable record (dead-lettered): a failure event
    would name the image and replace its owner's result."""
    store = MemoryStore()
    _api_order(store, settings, "i3", "acme", "uploads/i3/p.jpg")
    allowed = settings.replace(allowed_buckets=f"{BUCKET},other-allowed")
    ingest = Ingest(allowed, Serdes(allowed), store)
    ingest.screen.upload(_upload(), "uploads/i3/p.jpg")  # the image's own upload passes
    for forged in (
        _upload(key="uploads/other/theirs.jpg"),
        _upload(tenant="mallory"),
        _upload(tenant=None),
        _upload(bucket="other-allowed"),
        _upload(tenant="bad tenant"),  # refused as a mismatch before the handler could fail it for the owner
    ):
        with pytest.raises(UploadMismatch) as refused:
            ingest.screen.upload(forged, forged["key"])
        assert isinstance(refused.value, UndecodableEvent) and refused.value.code == "upload_mismatch"
        assert "uploads/i3" not in refused.value.message and "acme" not in refused.value.message
    never_created = _upload(image_id="i4", key="uploads/i3/p.jpg", tenant="mallory")  # not the API's: unaffected
    ingest.screen.upload(never_created, never_created["key"])
    (record,) = ingest(never_created, LOG)
    assert record.topic == settings.topic("images.step.thumbnail")


def test_the_order_is_read_with_the_storage_retry_and_an_outage_pauses_ingest(settings: Settings) -> None:
    store = MemoryStore(down=True)
    ingest = Ingest(settings.replace(storage_attempts=3, storage_backoff_s=0.0), Serdes(settings), store)
    with pytest.raises(StorageUnavailable):  # raised to the loop, which pauses: the upload is not failed
        ingest.screen.upload(_upload(), "uploads/i3/p.jpg")
    assert store.calls == [("get", api_order_key(settings.output_prefix, "i3"))] * 3


def test_a_step_request_is_screened_like_its_upload_and_later_inputs_are_the_images_own(settings: Settings) -> None:
    store = MemoryStore()
    _api_order(store, settings, "i1", None, "uploads/i1/p.jpg")
    step = _step(settings, store)
    step.screen.step(_request("thumbnail"))  # the first step of the image's own upload
    forged_first = _request("thumbnail", key="uploads/other/theirs.jpg")
    later = _request("enhance,thumbnail", index=1)
    own_output = f"{settings.output_prefix}/i1/00-enhance-{'0' * 16}/enhanced.jpg"
    step.screen.step({**later, "input_key": own_output})
    for forged in (
        forged_first,
        {**_request("thumbnail"), "input_key": "uploads/i2/p.jpg"},  # a first step reading another object
        {**later, "input_key": "uploads/i1/p.jpg"},  # a later step reading something not an output
        {**later, "input_key": f"{settings.output_prefix}/i2/00-enhance-{'0' * 16}/enhanced.jpg"},  # another image's
    ):
        with pytest.raises(UploadMismatch):
            step.screen.step(forged)


@pytest.mark.parametrize(
    "key",
    ["uploads/x\\..\\y.png", "uploads/i1/\x00.jpg", "derived/i1/../../uploads/i2/p.jpg", "uploads/i1/\x7f"],
)
def test_a_forged_step_request_naming_a_bad_key_fails_before_any_read(settings: Settings, key: str) -> None:
    store = MemoryStore()
    (record,) = _step(settings, store)(_request("thumbnail:sizes=32", key=key), LOG)
    failed = _decoded(settings, record)
    assert (failed["error_code"], failed["failed_step"]) == ("invalid_object_key", "thumbnail")
    assert store.calls == []
