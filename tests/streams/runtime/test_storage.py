"""Object-storage errors are translated at the boundary and retried only when retrying can help."""

from __future__ import annotations

import socket
from datetime import UTC, datetime

import pytest
import structlog
import urllib3
from minio.error import S3Error, ServerError

from processors import get_operation
from processors.errors import FileTooLarge
from streams.config import Settings
from streams.errors import AccessRefused, ObjectMissing, StorageRequestRefused, StorageUnavailable
from streams.handlers.steps import OperationStep
from streams.runtime.retry import retry
from streams.runtime.storage import ObjectStore, _translated
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


def _answer(status: int, code: str | None) -> Exception:
    """What the SDK raises for an answer of ``status``: an ``S3Error`` with the store's
    code, or, for a bodiless answer (a HEAD), a ``ServerError`` with the status alone."""
    response = urllib3.HTTPResponse(body=b"", status=status)
    if code is None:
        return ServerError(f"server failed with HTTP status code {status}", status)
    return S3Error(response, code, "refused", "/b/k", "req-1", "host-1", "b", "k")


def _translate(exc: Exception) -> Exception:
    with pytest.raises(Exception) as info, _translated("b", "k"):
        raise exc
    return info.value


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "InvalidRequest"),  # SeaweedFS on a key with a backslash-dot-dot segment or a NUL
        (400, "BadRequest"),  # the same key stat'ed (HEAD): the SDK names it
        (400, "InvalidArgument"),
        (400, "KeyTooLongError"),
        (400, "InvalidObjectName"),
        (400, "InvalidBucketName"),
        (400, "EntityTooLarge"),
        (405, "MethodNotAllowed"),
        (409, "BucketNotEmpty"),
        (411, "MissingContentLength"),
        (416, "InvalidRange"),
        (400, "SomethingNewTheStoreSays"),
        (414, None),
        (400, None),
    ],
)
def test_a_request_the_store_refuses_for_what_it_names_fails_that_record(status: int, code: str | None) -> None:
    error = _translate(_answer(status, code))
    assert isinstance(error, StorageRequestRefused), error
    assert (error.code, error.retryable) == ("storage_request_refused", False)
    assert "s3://b/k" in error.message and (code or str(status)) in error.message


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (503, "SlowDown"),
        (503, "ServiceUnavailable"),
        (500, "InternalError"),
        (502, "BadGateway"),
        (501, "MethodNotAllowed"),  # the SDK's name for a bodiless 501: the server, not the record
        (504, None),
        (429, "TooManyRequests"),
        (429, None),
        (400, "RequestTimeout"),  # S3 says it with a 400
        (408, None),
        (400, "Throttling"),
        (400, "ThrottlingException"),
        (503, "RequestLimitExceeded"),
        (409, "ConditionalRequestConflict"),  # a concurrent conditional write still in progress
        (409, "OperationAborted"),
        (400, "IncompleteBody"),  # a body cut or damaged on the way
        (400, "BadDigest"),
        (400, "XAmzContentSHA256Mismatch"),
        (403, "QuotaExceeded"),  # a full bucket: an operator's to free, not the record's
        (409, "XMinioAdminBucketQuotaExceeded"),
        (304, None),
        (301, "PermanentRedirect"),
    ],
)
def test_only_what_waiting_can_cure_is_an_outage(status: int, code: str | None) -> None:
    error = _translate(_answer(status, code))
    assert isinstance(error, StorageUnavailable), error
    assert error.retryable


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (404, "NoSuchKey", ObjectMissing),
        (404, "NoSuchBucket", ObjectMissing),
        (403, "AccessDenied", AccessRefused),
        (403, "InvalidAccessKeyId", AccessRefused),
        (403, "SignatureDoesNotMatch", AccessRefused),
        (400, "ExpiredToken", AccessRefused),
        (400, "AuthorizationHeaderMalformed", AccessRefused),  # a region the store does not serve
        (403, "RequestTimeTooSkewed", AccessRefused),  # this machine's clock, not the record
        (401, None, AccessRefused),  # bodiless: a HEAD, or an authenticating proxy
        (407, None, AccessRefused),
    ],
)
def test_missing_objects_and_refused_credentials_keep_their_own_errors(
    status: int, code: str, expected: type[Exception]
) -> None:
    assert type(_translate(_answer(status, code))) is expected


def test_a_missing_bucket_of_darkrooms_own_is_a_store_still_starting() -> None:
    """darkroom creates its buckets: their absence is an outage (SeaweedFS answers so while
    its filer starts), another bucket's a missing object."""
    with pytest.raises(StorageUnavailable), _translated("b", "k", own={"b"}):
        raise _answer(404, "NoSuchBucket")
    with pytest.raises(ObjectMissing), _translated("elsewhere", "k", own={"b"}):
        raise _answer(404, "NoSuchBucket")


class _DeniedClient:
    """The SDK's client for a store whose policy denies one object: ``get_object`` says
    AccessDenied; ``bucket_exists`` on darkroom's bucket answers, or is denied too."""

    def __init__(self, credentials_accepted: bool) -> None:
        self.credentials_accepted = credentials_accepted
        self.probed: list[str] = []

    def get_object(self, bucket: str, key: str) -> None:
        raise _answer(403, "AccessDenied")

    def bucket_exists(self, bucket: str) -> bool:
        self.probed.append(bucket)
        if not self.credentials_accepted:
            raise _answer(403, "AccessDenied")
        return True


@pytest.mark.parametrize(("accepted", "expected"), [(True, StorageRequestRefused), (False, AccessRefused)])
def test_access_denied_to_one_object_is_that_records_while_the_credentials_are_accepted(
    dead_store_settings: Settings, accepted: bool, expected: type[Exception]
) -> None:
    """A key a bucket policy denies must fail its record, not stop the group as refused
    credentials do: the store is asked about darkroom's own bucket to tell them apart."""
    store = ObjectStore(dead_store_settings)
    client = _DeniedClient(accepted)
    store._client = client  # type: ignore[assignment]
    with pytest.raises(expected):
        store.get("darkroom", "uploads/i1/denied.jpg")
    assert client.probed == [dead_store_settings.bucket]


def test_a_refused_request_is_not_retried() -> None:
    calls: list[int] = []

    def refused() -> None:
        calls.append(1)
        raise StorageRequestRefused("s3://b/k: InvalidRequest")

    with pytest.raises(StorageRequestRefused):
        retry(refused, attempts=5, backoff_s=0.0, sleep=lambda _: None)
    assert len(calls) == 1


@pytest.mark.integration
def test_keys_the_real_store_refuses_are_refused_requests_not_outages(settings: Settings, store: ObjectStore) -> None:
    """SeaweedFS answers ``InvalidRequest`` (``BadRequest`` to a HEAD) for a key with a
    backslash-dot-dot segment or a NUL, and ``KeyTooLongError`` to a PUT of a key over
    1,024 bytes; before, each read as ``storage_unavailable`` and paused the worker for a day."""
    for key in ("uploads/x\\..\\y.png", "uploads/x\x00y.png"):
        with pytest.raises(StorageRequestRefused, match="InvalidRequest"):
            store.get(settings.bucket, key)
        with pytest.raises(StorageRequestRefused, match="BadRequest"):
            store.stat(settings.bucket, key)
        with pytest.raises(StorageRequestRefused, match="InvalidRequest"):
            store.put(settings.bucket, key, b"x", if_absent=True)
    with pytest.raises(StorageRequestRefused, match="KeyTooLongError"):
        store.put(settings.bucket, "k" * 1100, b"x")
    with pytest.raises(ObjectMissing):  # the store answers for the key it was asked about; nothing else changed
        store.get(settings.bucket, "uploads/x/y.png")
