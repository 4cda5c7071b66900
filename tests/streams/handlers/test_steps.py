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
from streams.errors import StorageUnavailable
from streams.handlers.steps import MANIFEST, Ingest, OperationStep
from streams.wire import pipeline
from streams.wire.events import Serdes, StepRequest, step_request, upload_event
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
    ingest = Ingest(settings, Serdes(settings))
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
