"""Object-storage errors are translated at the boundary and retried only when retrying can help."""

from __future__ import annotations

import socket
from datetime import UTC, datetime

import pytest
import structlog

from processors import get_operation
from processors.errors import FileTooLarge
from streams.config import Settings
from streams.errors import ObjectMissing, StorageUnavailable
from streams.handlers.steps import OperationStep
from streams.runtime.retry import retry
from streams.runtime.storage import ObjectStore
from streams.wire import events
from streams.wire.events import Serdes
from streams.wire.pipeline import parse_spec


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def dead_store_settings() -> Settings:
    return Settings(
        s3_endpoint=f"127.0.0.1:{_closed_port()}",
        s3_access_key="AK",
        s3_secret_key="SK",
        storage_attempts=3,
        storage_backoff_s=0.01,
    )


def test_an_unreachable_server_is_retryable(dead_store_settings: Settings) -> None:
    with pytest.raises(StorageUnavailable) as info:
        ObjectStore(dead_store_settings).get("bucket", "key")
    assert info.value.retryable and info.value.code == "storage_unavailable"


def test_retry_retries_only_retryable_errors() -> None:
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise StorageUnavailable("down")
        return "ok"

    assert retry(flaky, attempts=3, backoff_s=0.0, sleep=lambda _: None) == "ok"
    assert len(calls) == 3

    def missing() -> None:
        calls.append(1)
        raise ObjectMissing("gone")

    calls.clear()
    with pytest.raises(ObjectMissing):
        retry(missing, attempts=5, backoff_s=0.0, sleep=lambda _: None)
    assert len(calls) == 1


def test_storage_down_is_an_outage_for_the_loop_and_fails_retryably_once_given_up(
    dead_store_settings: Settings,
) -> None:
    """The step does not finalize the image on an outage (the loop pauses); when the loop's
    retry budget is spent, ``fail`` makes the retryable failure event."""
    serdes = Serdes(dead_store_settings)
    upload = {
        "event_id": "u1",
        "image_id": "i1",
        "bucket": dead_store_settings.bucket,
        "key": "k.jpg",
        "submitted_at": datetime.now(UTC),
    }
    request = events.step_request(
        upload, upload_event_id="u1", pipeline=parse_spec("thumbnail"), step_index=0, input_key="k.jpg"
    )
    step = OperationStep(dead_store_settings, serdes, ObjectStore(dead_store_settings), get_operation("thumbnail"))
    with pytest.raises(StorageUnavailable) as outage:
        step(request, structlog.get_logger("test"))
    (record,) = step.fail(request, outage.value)
    failure = serdes.failed.decode(record.value, record.topic)
    assert record.topic == "images.failed"
    assert (failure["error_code"], failure["retryable"], failure["failed_step"]) == (
        "storage_unavailable",
        True,
        "thumbnail",
    )


@pytest.mark.integration
def test_missing_objects_and_oversized_objects(settings: Settings, store: ObjectStore) -> None:
    with pytest.raises(ObjectMissing):
        store.get(settings.bucket, "no/such/key")
    store.put(settings.bucket, "big.bin", b"x" * 2048)
    with pytest.raises(FileTooLarge):
        store.get(settings.bucket, "big.bin", max_bytes=1024)
    assert store.get(settings.bucket, "big.bin", max_bytes=4096) == b"x" * 2048


def test_a_name_the_sdk_rejects_is_a_missing_object(dead_store_settings: Settings) -> None:
    with pytest.raises(ObjectMissing, match="cannot exist"):
        ObjectStore(dead_store_settings).get("b", "key")
