"""The one object-storage client (minio SDK), with its errors translated at the boundary.

What the store answers decides what a worker does (``_error``):

- a missing object is permanent (``object_missing``), and so is a missing bucket, except
  one of darkroom's own (``DARKROOM_BUCKET``, ``DARKROOM_ALLOWED_BUCKETS``): darkroom
  creates those, so their absence is a store still starting, an outage;
- refused credentials (and a bodiless 401 or 407) are ``AccessRefused`` (the worker stops
  consuming until accepted); access denied to one object while the store accepts
  darkroom's credentials for its own bucket is that record's (``storage_request_refused``):
  a policy can deny one key, and that must not stop the group;
- a request the store refuses for what it names (``InvalidRequest``, ``InvalidArgument``,
  ``KeyTooLongError``, ``MethodNotAllowed``, any other 4xx, with or without an S3 error
  body) is permanent (``storage_request_refused``): it fails that record, never the worker;
- only what waiting can cure is retryable (``storage_unavailable``, retried by
  ``streams.runtime.retry``, then an outage for the loop): no connection, a timeout,
  a 5xx, throttling (``SlowDown``, 429, 503), 408, a conflicting write still in progress,
  a body damaged on the way (``IncompleteBody``, ``BadDigest``) and a full quota.

The SDK's own retries are off so that there is one retry policy.
"""

from __future__ import annotations

import io
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

import urllib3
from minio import Minio
from minio.error import MinioException, S3Error, ServerError

from processors.errors import FileTooLarge
from streams.config import Settings
from streams.errors import AccessRefused, ObjectMissing, StorageRequestRefused, StorageUnavailable

_MISSING = frozenset({"NoSuchKey", "NoSuchBucket", "NoSuchObject", "ResourceNotFound"})
_DENIED = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AllAccessDisabled",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "AuthorizationHeaderMalformed",  # a region the store does not serve: darkroom's settings
        "RequestTimeTooSkewed",  # this machine's clock: not the record's fault either
    }
)
"""Answers about darkroom's credentials or settings, whatever their status: every record would
meet them, so they stop the worker (``AccessRefused``) instead of failing the backlog."""
_EXISTS = frozenset({"PreconditionFailed"})
"""A conditional write found an object (``ConditionalRequestConflict``, a concurrent
conditional write still in progress, stays retryable)."""
_PASSING = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequests",
        "RequestThrottled",
        "RequestTimeout",
        "ConditionalRequestConflict",
        "OperationAborted",
        "ServiceUnavailable",
        "InternalError",
        "IncompleteBody",  # the body was cut or damaged on the way: sending it again may pass
        "BadDigest",
        "XAmzContentSHA256Mismatch",
        "QuotaExceeded",  # a full bucket frees up (an operator's, not the record's)
        "XMinioAdminBucketQuotaExceeded",
    }
)
"""Codes of answers that waiting can cure, whatever their status (``RequestTimeout`` is a 400)."""
_PASSING_STATUS = frozenset({408, 429})
_DENIED_STATUS = frozenset({401, 407})
"""Bodiless answers about credentials (a HEAD, or an authenticating proxy in between)."""


class _Exists(Exception):
    """A conditional write found the object already there."""


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    content_type: str
    metadata: Mapping[str, str]


class Store(Protocol):
    """The seam between darkroom and object storage: what the steps, the client, the API
    and the notifications ingest call. ``ObjectStore`` is the one on S3; tests plug in an
    in-memory one. Errors are darkroom's (``ObjectMissing``, ``StorageUnavailable``,
    ``StorageRequestRefused``, ``AccessRefused``, ``FileTooLarge``), never the SDK's."""

    def ensure_bucket(self, bucket: str) -> None: ...
    def stat(self, bucket: str, key: str) -> ObjectInfo: ...
    def get(self, bucket: str, key: str, *, max_bytes: int | None = None) -> bytes: ...
    def put(
        self,
        bucket: str,
        key: str,
        data: bytes,
        *,
        content_type: str = "application/octet-stream",
        metadata: Mapping[str, str] | None = None,
        if_absent: bool = False,
    ) -> bool: ...


def _error(code: str | None, status: int, where: str, own_bucket: bool = False) -> Exception:
    """darkroom's error for the store's answer ``code`` (None: no S3 error body) with HTTP
    ``status``; ``own_bucket``: the request was for one of darkroom's own buckets."""
    if code in _EXISTS:
        return _Exists(where)
    if code == "NoSuchBucket" and own_bucket:
        return StorageUnavailable(f"object storage has no bucket for {where} yet (starting?)")
    if code in _MISSING:
        return ObjectMissing(f"{where} does not exist")
    if code in _DENIED or (code is None and status in _DENIED_STATUS):
        return AccessRefused(f"object storage refused access to {where}: {code or f'HTTP {status}'}")
    said = code or f"HTTP {status}"
    if code in _PASSING or status in _PASSING_STATUS or not 400 <= status < 500:
        return StorageUnavailable(f"object storage error on {where}: {said}")
    return StorageRequestRefused(f"object storage refused the request for {where}: {said}")


@contextmanager
def _translated(bucket: str, key: str = "", own: Collection[str] = ()) -> Iterator[None]:
    """The SDK's errors as darkroom's (``_error``); ``own``: darkroom's own buckets."""
    where = f"s3://{bucket}/{key}" if key else f"s3://{bucket}"
    try:
        yield
    except S3Error as exc:
        raise _error(exc.code, exc.response.status, where, bucket in own) from None
    except ServerError as exc:  # an answer without a body (HEAD): its status is all there is
        raise _error(None, exc.status_code, where, bucket in own) from None
    except ValueError as exc:  # the SDK validates names locally: such an object cannot exist
        raise ObjectMissing(f"{where} cannot exist: {exc}") from None
    except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise StorageUnavailable(f"object storage unreachable for {where}: {type(exc).__name__}") from None


class ObjectStore:
    """Small facade over ``minio.Minio`` with darkroom's errors and timeouts."""

    def __init__(self, settings: Settings) -> None:
        endpoint, access_key, secret_key, secure = settings.s3_credentials()
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=5, read=60),
            retries=False,
            maxsize=8,
            ca_certs=str(settings.s3_ca_bundle) if settings.s3_ca_bundle is not None else None,
        )
        self._client = Minio(
            endpoint,
            access_key=access_key,
            secret_key=secret_key,
            secure=secure,
            region=settings.s3_region,
            http_client=http,
        )
        self._home = settings.bucket
        self._own = frozenset({settings.bucket, *settings.buckets_allowed})

    @contextmanager
    def _translated(self, bucket: str, key: str = "") -> Iterator[None]:
        """``_translated`` for this store; access denied to one object is that object's
        (``StorageRequestRefused``) when the store still accepts darkroom's credentials for
        its own bucket, so a key a policy denies fails its record instead of every record."""
        try:
            with _translated(bucket, key, self._own):
                yield
        except AccessRefused as exc:
            if not key or not self._accepted():
                raise
            raise StorageRequestRefused(f"{exc.message}, while darkroom's credentials are accepted") from None

    def _accepted(self) -> bool:
        """Whether the store accepts darkroom's credentials (a request on its own bucket)."""
        try:
            self._client.bucket_exists(self._home)
        except (MinioException, urllib3.exceptions.HTTPError, OSError, ValueError):
            return False
        return True

    def ensure_bucket(self, bucket: str) -> None:
        with self._translated(bucket):
            if not self._client.bucket_exists(bucket):
                try:
                    self._client.make_bucket(bucket)
                except S3Error as exc:
                    if exc.code not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                        raise

    def stat(self, bucket: str, key: str) -> ObjectInfo:
        with self._translated(bucket, key):
            st = self._client.stat_object(bucket, key)
        meta = {
            k.lower().removeprefix("x-amz-meta-"): v
            for k, v in (st.metadata or {}).items()
            if k.lower().startswith("x-amz-meta-")
        }
        return ObjectInfo(size=st.size or 0, content_type=st.content_type or "", metadata=meta)

    def get(self, bucket: str, key: str, *, max_bytes: int | None = None) -> bytes:
        """Read a whole object; refuse one over ``max_bytes`` from its length header, unread."""
        with self._translated(bucket, key):
            response = self._client.get_object(bucket, key)
            try:
                size = int(response.headers.get("Content-Length", "0"))
                if max_bytes is not None and size > max_bytes:
                    raise FileTooLarge(f"s3://{bucket}/{key} is {size} bytes; the limit is {max_bytes}")
                data = response.read()
            finally:
                response.close()
                response.release_conn()
        if max_bytes is not None and len(data) > max_bytes:
            raise FileTooLarge(f"s3://{bucket}/{key} is over the {max_bytes}-byte limit")
        return data

    def put(
        self,
        bucket: str,
        key: str,
        data: bytes,
        *,
        content_type: str = "application/octet-stream",
        metadata: Mapping[str, str] | None = None,
        if_absent: bool = False,
    ) -> bool:
        """Write an object; with ``if_absent``, only where none exists (``If-None-Match: *``),
        so an object is never replaced by other bytes. Returns False when one existed."""
        if not if_absent:
            with self._translated(bucket, key):
                self._client.put_object(
                    bucket, key, io.BytesIO(data), len(data), content_type=content_type, metadata=dict(metadata or {})
                )
            return True
        headers: dict[str, str | list[str] | tuple[str]] = {"Content-Type": content_type, "If-None-Match": "*"}
        headers.update({f"x-amz-meta-{k}": v for k, v in (metadata or {}).items()})
        try:
            with self._translated(bucket, key):
                # put_object has no way to send If-None-Match (minio 7.2.20 turns unknown headers
                # into user metadata); _put_object is the single PUT it wraps
                self._client._put_object(bucket, key, data, headers)
        except _Exists:
            return False
        return True

    def presigned_get(self, bucket: str, key: str, expires: timedelta = timedelta(hours=1)) -> str:
        with self._translated(bucket, key):
            return self._client.presigned_get_object(bucket, key, expires=expires)

    def presigned_put(self, bucket: str, key: str, expires: timedelta) -> str:
        """A URL that lets its holder PUT one object (the HTTP API's uploads). Computed
        locally: the region is configured, so nothing is asked of the server."""
        with self._translated(bucket, key):
            return self._client.presigned_put_object(bucket, key, expires=expires)
