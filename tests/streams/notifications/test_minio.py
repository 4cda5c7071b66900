"""Decoding MinIO's notification records (pure: no broker, no S3)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from streams.errors import UndecodableEvent
from streams.notifications import minio
from tests.streams.notifications.samples import DOCUMENTED, TRICKY_KEYS, notification


def test_the_documented_kafka_record_decodes() -> None:
    (obj,) = minio.decode(DOCUMENTED.encode())
    assert obj == minio.ObjectEvent(
        name="s3:ObjectCreated:Put",
        bucket="images",
        key="myphoto.jpg",
        etag="430f89010c77aa34fc8760696da62d08-1",
        sequencer="15C32494527B46C5",
        time=datetime(2019, 9, 10, 17, 41, 54, tzinfo=UTC),
        size=6474,
        content_type="image/jpeg",
        user_metadata={"content-type": "image/jpeg"},
    )
    assert obj.writes_content


@pytest.mark.parametrize(("real", "escaped"), TRICKY_KEYS.items())
def test_keys_come_back_as_stored(real: str, escaped: str) -> None:
    value = notification("darkroom", real)
    assert json.loads(value)["Records"][0]["s3"]["object"]["key"] == escaped  # escaped as MinIO does
    (obj,) = minio.decode(value)
    assert obj.key == real


def test_a_literal_percent_escape_in_a_key_is_not_unescaped_twice() -> None:
    (obj,) = minio.decode(notification("darkroom", "uploads/%41 is not A.jpg"))
    assert obj.key == "uploads/%41 is not A.jpg"


@pytest.mark.parametrize(
    ("event", "writes"),
    [
        ("s3:ObjectCreated:Put", True),
        ("s3:ObjectCreated:Post", True),
        ("s3:ObjectCreated:Copy", True),
        ("s3:ObjectCreated:CompleteMultipartUpload", True),
        ("s3:ObjectCreated:PutTagging", False),
        ("s3:ObjectCreated:PutRetention", False),
        ("s3:ObjectRemoved:Delete", False),
        ("s3:ObjectAccessed:Get", False),
    ],
)
def test_only_events_that_write_bytes_count_as_new_content(event: str, writes: bool) -> None:
    (obj,) = minio.decode(notification("darkroom", "uploads/a.jpg", event=event))
    assert obj.writes_content is writes
    if event == "s3:ObjectRemoved:Delete":
        assert (obj.etag, obj.size) == ("", 0)  # MinIO omits them for removals


def test_every_record_of_a_notification_is_kept() -> None:
    first, second = (json.loads(notification("b", key))["Records"][0] for key in ("one.jpg", "two.jpg"))
    objs = minio.decode(json.dumps({"Records": [first, second]}).encode())
    assert [o.key for o in objs] == ["one.jpg", "two.jpg"]


def _broken(change: str) -> bytes:
    doc = json.loads(notification("darkroom", "uploads/a.jpg"))
    record = doc["Records"][0]
    if change == "no eventName":
        del record["eventName"]
    elif change == "no bucket":
        del record["s3"]["bucket"]
    elif change == "numeric key":
        record["s3"]["object"]["key"] = 7
    elif change == "bad time":
        record["eventTime"] = "yesterday"
    elif change == "not utf-8":
        record["s3"]["object"]["key"] = "uploads%2F%FF.jpg"
    elif change == "record not an object":
        doc["Records"] = ["s3:ObjectCreated:Put"]
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    "value",
    [
        b"",
        None,
        b"\x00\x01not json",
        b"\xc3\x01\x00avro-ish",
        b"[]",
        b'{"EventName": "s3:ObjectCreated:Put", "Key": "b/k"}',
        b'{"Records": []}',
        *(
            _broken(c)
            for c in ("no eventName", "no bucket", "numeric key", "bad time", "not utf-8", "record not an object")
        ),
    ],
)
def test_what_is_not_a_notification_is_undecodable(value: bytes | None) -> None:
    with pytest.raises(UndecodableEvent, match="not a bucket notification"):
        minio.decode(value)
