"""The webhook body: thin, deterministic, under 20 KB, the same from a dict or an Avro-decoded event."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from streams.sinks.webhooks.payload import MAX_PAYLOAD_BYTES, payload_for
from streams.wire.serde import Serde


def _output(i: int, key_len: int = 40) -> dict[str, Any]:
    return {
        "step_index": 0,
        "operation": "thumbnail",
        "name": f"r{i}",
        "bucket": "darkroom",
        "key": "derived/img-1/0-thumbnail-abc/" + "k" * key_len + f"{i}.webp",
        "size": 1000 + i,
        "width": 256,
        "height": 171,
        "content_type": "image/webp",
        "sha256": "ab" * 32,
    }


def _completed(outputs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "event_id": "0b4c5a8e-2f6d-5c1a-9e8f-0123456789ab",
        "upload_event_id": "up-1",
        "image_id": "img-1",
        "bucket": "darkroom",
        "source_key": "uploads/img-1/photo.jpg",
        "pipeline": [{"operation": "thumbnail", "params": {"sizes": "256"}}],
        "outputs": outputs,
        "timings": [{"step_index": 0, "operation": "thumbnail"}],
        "callback_url": "https://hooks.example.com/in?token=s3cr3t",
        "tenant": "acme",
        "submitted_at": datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
        "completed_at": datetime(2026, 1, 2, 3, 4, 6, 789000, tzinfo=UTC),
    }


def test_the_completed_payload_is_thin_deterministic_json() -> None:
    event = _completed([_output(0), _output(1)])
    body = payload_for(event, "completed")
    assert body == payload_for(dict(event), "completed")
    doc = json.loads(body)
    assert body == json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    assert doc["type"] == "image.completed" and doc["timestamp"] == "2026-01-02T03:04:06.789Z"
    data = doc["data"]
    assert {k: data[k] for k in ("event_id", "image_id", "tenant", "status", "outputs_truncated")} == {
        "event_id": event["event_id"],
        "image_id": "img-1",
        "tenant": "acme",
        "status": "completed",
        "outputs_truncated": False,
    }
    assert data["submitted_at"] == "2026-01-02T03:04:05.678Z" and data["outputs"] == [_output(0), _output(1)]
    assert b"s3cr3t" not in body and "timings" not in data and "pipeline" not in data


def test_the_failed_payload_carries_the_error() -> None:
    event = {
        **_completed([]),
        "error_code": "not_an_image",
        "message": "x" * 5000,
        "retryable": False,
        "failed_step": "thumbnail",
        "step_index": 0,
        "failed_at": datetime(2026, 1, 2, 3, 4, 7, tzinfo=UTC),
    }
    del event["completed_at"]
    doc = json.loads(payload_for(event, "failed"))
    assert doc["type"] == "image.failed" and doc["timestamp"] == "2026-01-02T03:04:07.000Z"
    data = doc["data"]
    assert (data["status"], data["error_code"], data["failed_step"], data["retryable"]) == (
        "failed",
        "not_an_image",
        "thumbnail",
        False,
    )
    assert len(data["message"]) == 1000 and data["outputs"] == []
    with pytest.raises(ValueError):
        payload_for(event, "done")  # type: ignore[arg-type]


def test_a_payload_from_an_avro_decoded_event() -> None:
    serde = Serde("ImageCompleted")
    event = _completed([_output(0)])
    event["timings"] = []
    decoded = serde.decode(serde.encode(event, "images.completed"), "images.completed")
    assert payload_for(decoded, "completed") == payload_for(event, "completed")


def test_payloads_stay_under_20_kb_by_truncating_outputs() -> None:
    body = payload_for(_completed([_output(i, key_len=200) for i in range(500)]), "completed")
    data = json.loads(body)["data"]
    assert len(body) <= MAX_PAYLOAD_BYTES
    assert data["outputs_truncated"] is True and data["outputs_total"] == 500
    assert 0 < len(data["outputs"]) < 500 and data["outputs"] == [_output(i, 200) for i in range(len(data["outputs"]))]
    bigger = payload_for(_completed([_output(i, key_len=200) for i in range(len(data["outputs"]) + 1)]), "completed")
    assert len(bigger) > MAX_PAYLOAD_BYTES or json.loads(bigger)["data"]["outputs_truncated"]
