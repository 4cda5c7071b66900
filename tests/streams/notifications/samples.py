"""Notification records shaped as MinIO's Kafka target writes them.

``DOCUMENTED`` is the Kafka example of MinIO's bucket-notification guide
(https://github.com/minio/minio/blob/master/docs/bucket/notifications/README.md#publish-minio-events-via-kafka);
``notification`` builds records like it, escaping the key as MinIO does (Go's
``url.QueryEscape``, ``cmd/event-notification.go``).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote_plus

DOCUMENTED = """{
    "EventName": "s3:ObjectCreated:Put",
    "Key": "images/myphoto.jpg",
    "Records": [
        {
            "eventVersion": "2.0",
            "eventSource": "minio:s3",
            "awsRegion": "",
            "eventTime": "2019-09-10T17:41:54Z",
            "eventName": "s3:ObjectCreated:Put",
            "userIdentity": {
                "principalId": "AKIAIOSFODNN7EXAMPLE"
            },
            "requestParameters": {
                "accessKey": "AKIAIOSFODNN7EXAMPLE",
                "region": "",
                "sourceIPAddress": "192.168.56.192"
            },
            "responseElements": {
                "x-amz-request-id": "15C3249451E12784",
                "x-minio-deployment-id": "751a8ba6-acb2-42f6-a297-4cdf1cf1fa4f",
                "x-minio-origin-endpoint": "http://192.168.97.83:9000"
            },
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "Config",
                "bucket": {
                    "name": "images",
                    "ownerIdentity": {
                        "principalId": "AKIAIOSFODNN7EXAMPLE"
                    },
                    "arn": "arn:aws:s3:::images"
                },
                "object": {
                    "key": "myphoto.jpg",
                    "size": 6474,
                    "eTag": "430f89010c77aa34fc8760696da62d08-1",
                    "contentType": "image/jpeg",
                    "userMetadata": {
                        "content-type": "image/jpeg"
                    },
                    "versionId": "1",
                    "sequencer": "15C32494527B46C5"
                }
            },
            "source": {
                "host": "192.168.56.192",
                "port": "",
                "userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:69.0) Gecko/20100101 Firefox/69.0"
            }
        }
    ]
}"""

TRICKY_KEYS = {
    # real key → as MinIO writes it in Records[].s3.object.key (Go's url.QueryEscape)
    "uploads/summer photos/a+b 100%/café.jpg": "uploads%2Fsummer+photos%2Fa%2Bb+100%25%2Fcaf%C3%A9.jpg",
    "uploads/日本/写真 1.png": "uploads%2F%E6%97%A5%E6%9C%AC%2F%E5%86%99%E7%9C%9F+1.png",
    "uploads/~tilde_ok-.jpg": "uploads%2F~tilde_ok-.jpg",
}


def notification(
    bucket: str,
    key: str,
    *,
    event: str = "s3:ObjectCreated:Put",
    etag: str = "430f89010c77aa34fc8760696da62d08",
    sequencer: str = "17D2A5C3B1E0F001",
    size: int = 6474,
    time: str = "2026-11-30T10:00:00.000Z",
) -> bytes:
    """One record as MinIO writes it for ``event`` on ``bucket``/``key``; removals carry no
    eTag, size or content type."""
    obj: dict[str, Any] = {"key": quote_plus(key, safe=""), "sequencer": sequencer}
    if not event.startswith("s3:ObjectRemoved:"):
        obj |= {"size": size, "eTag": etag, "contentType": "image/jpeg", "userMetadata": {"content-type": "image/jpeg"}}
    record = {
        "eventVersion": "2.0",
        "eventSource": "minio:s3",
        "awsRegion": "",
        "eventTime": time,
        "eventName": event,
        "userIdentity": {"principalId": "minioadmin"},
        "requestParameters": {"principalId": "minioadmin", "region": "", "sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": "17D2A5C3B1E0F001", "x-minio-origin-endpoint": "http://minio:9000"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "Config",
            "bucket": {"name": bucket, "ownerIdentity": {"principalId": "minioadmin"}, "arn": f"arn:aws:s3:::{bucket}"},
            "object": obj,
        },
        "source": {"host": "127.0.0.1", "port": "", "userAgent": "MinIO (linux; amd64) minio-py/7.2.0"},
    }
    return json.dumps({"EventName": event, "Key": f"{bucket}/{key}", "Records": [record]}).encode()
