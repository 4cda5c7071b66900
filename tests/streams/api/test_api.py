"""The HTTP flow against a running uvicorn, with httpx, on the embedded stack.

create → presigned PUT → start → poll → download; the direct upload (multipart and raw);
reprocess; Idempotency-Key; tenants that cannot see each other; 401, 413, 415, 422, 429;
every error a problem with darkroom's code.
"""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import pytest

from streams.api import keys
from streams.dev.samples import photo_jpeg
from streams.notifications.worker import notifications_spec
from streams.runtime.kafka import Record, deliver, make_producer
from streams.runtime.supervisor import Supervisor
from streams.runtime.topics import ensure_topics
from tests.helpers import final_image
from tests.streams.api.conftest import Server
from tests.streams.notifications.samples import notification

pytestmark = pytest.mark.integration

PHOTO = photo_jpeg(640, 480, seed=3)
PROBLEM = "application/problem+json"


def _problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["code"] == code and body["type"] == f"urn:darkroom:problem:{code}"
    return body


def test_create_upload_start_poll_and_download(api: Server) -> None:
    with httpx.Client(base_url=api.url, headers=api.auth(), timeout=30) as http:
        created = http.post("/v1/images", json={"preset": "web", "filename": "photo.jpg"})
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["status"] == "pending" and body["upload_method"] == "PUT"
        assert created.headers["location"] == body["status_url"] == f"/v1/images/{body['id']}"
        assert http.get(body["status_url"]).json()["status"] == "pending"
        _problem(http.post(body["start_url"]), 409, "object_missing")  # nothing uploaded yet

        assert httpx.put(body["upload_url"], content=PHOTO).status_code == 200  # no darkroom key: the URL is the grant
        started = http.post(body["start_url"])
        assert started.status_code == 202, started.text
        event_id = started.json()["upload_event_id"]
        again = http.post(body["start_url"])  # a retried start emits nothing new
        assert again.status_code == 202 and again.json()["upload_event_id"] == event_id

        image = final_image(http, body["status_url"])
        assert image["status"] == "completed" and image["upload_event_id"] == event_id
        assert image["pipeline"] == "thumbnail:sizes=256+1024,format=webp,quality=80" and image["preset"] == "web"
        assert [t["operation"] for t in image["timings"]] == ["thumbnail"] and image["timings"][0]["duration_ms"] > 0
        assert {o["name"] for o in image["outputs"]} == {"thumb-256", "thumb-1024"}
        out = next(o for o in image["outputs"] if o["name"] == "thumb-256")
        download = httpx.get(out["url"])
        assert hashlib.sha256(download.content).hexdigest() == out["sha256"]

        redirect = http.get(f"/v1/images/{body['id']}/outputs/thumb-256")
        assert redirect.status_code == 307
        assert httpx.get(redirect.headers["location"]).content == download.content
        assert http.get(f"/v1/images/{body['id']}/outputs/0-thumbnail-thumb-256").status_code == 307
        _problem(http.get(f"/v1/images/{body['id']}/outputs/nope"), 404, "not_found")


def test_an_upload_the_notification_ingest_sees_starts_the_image_without_start(api: Server) -> None:
    """Where the store sends notifications, the bytes landing start the image: the
    notification worker finds the order the API wrote beside the upload and emits the
    upload event ``start`` would have (the same event id, so a late ``start`` adds nothing)."""
    settings = api.settings.replace(
        notifications_topic=f"{api.settings.topic_prefix}minio-events",
        notification_rules='[{"bucket": "darkroom", "prefix": "incoming/", "preset": "web"}]',
    )
    ensure_topics(settings)
    supervisor = Supervisor(settings, [notifications_spec(settings)])
    supervisor.start()
    try:
        with httpx.Client(base_url=api.url, headers=api.auth(), timeout=30) as http:
            body = http.post("/v1/images", json={"pipeline": "thumbnail:sizes=48", "filename": "n.jpg"}).json()
            assert httpx.put(body["upload_url"], content=PHOTO).status_code == 200
            key = unquote(urlsplit(body["upload_url"]).path).removeprefix(f"/{settings.bucket}/")
            as_minio_sends_it = notification(settings.bucket, key)
            deliver(make_producer(settings), [Record(settings.notifications_topic, key, as_minio_sends_it)])
            image = final_image(http, body["status_url"], timeout_s=90)  # no POST .../start
            assert image["status"] == "completed" and [o["name"] for o in image["outputs"]] == ["thumb-48"]
            started = http.post(body["start_url"])  # too late to matter: the same upload
            assert started.status_code == 202 and started.json()["upload_event_id"] == image["upload_event_id"]
    finally:
        supervisor.stop.set()
        supervisor.join(30)


def test_direct_uploads_start_processing_at_once(api: Server) -> None:
    with httpx.Client(base_url=api.url, headers=api.auth(), timeout=30) as http:
        multipart = http.post(
            "/v1/images",
            files={"file": ("p.jpg", PHOTO, "image/jpeg")},
            data={"pipeline": "thumbnail:sizes=128,format=png"},
        )
        assert multipart.status_code == 202, multipart.text
        raw = http.post(
            "/v1/images",
            params={"pipeline": "thumbnail:sizes=96", "filename": "raw.jpg"},
            content=PHOTO,
            headers={"Content-Type": "image/jpeg"},
        )
        assert raw.status_code == 202, raw.text
        for response, name in ((multipart, "thumb-128"), (raw, "thumb-96")):
            image = final_image(http, response.json()["status_url"])
            assert image["status"] == "completed" and [o["name"] for o in image["outputs"]] == [name]
        damaged = http.post(  # an image darkroom reads by its header, then cannot decode: failed later
            "/v1/images?preset=preview", content=PHOTO[: len(PHOTO) // 2], headers={"Content-Type": "image/jpeg"}
        )
        image = final_image(http, damaged.json()["status_url"])
        assert image["status"] == "failed" and image["error"]["code"] == "truncated_image"
        assert image["error"]["retryable"] is False and image["outputs"] == []


def test_reprocess_reuses_outputs_unless_forced_or_given_another_pipeline(api: Server) -> None:
    with httpx.Client(base_url=api.url, headers=api.auth(), timeout=30) as http:
        first = http.post(
            "/v1/images?pipeline=thumbnail:sizes=64", content=PHOTO, headers={"Content-Type": "image/jpeg"}
        )
        url = first.json()["status_url"]
        before = final_image(http, url)
        again = http.post(f"{url}/reprocess")
        assert again.status_code == 202, again.text
        event_id = again.json()["upload_event_id"]
        assert event_id != before["upload_event_id"]
        after = final_image(http, url, event_id)
        assert after["timings"][0]["reused"] is True
        assert [o["sha256"] for o in after["outputs"]] == [o["sha256"] for o in before["outputs"]]

        other = http.post(f"{url}/reprocess", json={"pipeline": "thumbnail:sizes=32", "force": True})
        final = final_image(http, url, other.json()["upload_event_id"])
        assert [o["name"] for o in final["outputs"]] == ["thumb-32"] and final["timings"][0]["reused"] is False
        assert final["pipeline"] == "thumbnail:sizes=32" and final["preset"] is None  # what produced them
        _problem(http.post(f"{url}/reprocess", json={"pipeline": "nope"}), 422, "unknown_operation")
        _problem(http.post(f"{url}/reprocess", json={"force": "maybe"}), 422, "invalid_parameters")

        same = {"Idempotency-Key": "again-1"}
        r1, r2 = (http.post(f"{url}/reprocess", json={"force": True}, headers=same) for _ in range(2))
        assert r1.json()["upload_event_id"] == r2.json()["upload_event_id"] != other.json()["upload_event_id"]
        final_image(http, url, r1.json()["upload_event_id"])

        pending = http.post("/v1/images", json={"preset": "web"}).json()
        _problem(http.post(f"/v1/images/{pending['id']}/reprocess"), 409, "not_started")


def test_an_idempotency_key_makes_a_retry_safe(api: Server) -> None:
    with httpx.Client(base_url=api.url, headers=api.auth(), timeout=30) as http:
        once = {"Idempotency-Key": "order-4711"}
        first = http.post("/v1/images", json={"preset": "web"}, headers=once)
        retry = http.post("/v1/images", json={"preset": "web"}, headers=once)
        assert first.status_code == retry.status_code == 201
        assert retry.json() == first.json() and retry.headers["idempotent-replayed"] == "true"
        _problem(http.post("/v1/images", json={"preset": "catalog"}, headers=once), 422, "idempotency_key_reused")
        # another tenant's identical key is another request
        theirs = http.post("/v1/images", json={"preset": "web"}, headers={**once, **api.auth(api.other_token)})
        assert theirs.status_code == 201 and theirs.json()["id"] != first.json()["id"]

        direct = {"Idempotency-Key": "upload-1"}
        a = http.post("/v1/images", files={"file": ("a.jpg", PHOTO)}, data={"preset": "preview"}, headers=direct)
        b = http.post("/v1/images", files={"file": ("a.jpg", PHOTO)}, data={"preset": "preview"}, headers=direct)
        assert a.status_code == b.status_code == 202 and a.json() == b.json()  # another multipart boundary
        # a request that failed gives its key back
        _problem(
            http.post("/v1/images", json={"preset": "nope"}, headers={"Idempotency-Key": "k2"}), 422, "invalid_pipeline"
        )
        assert http.post("/v1/images", json={"preset": "web"}, headers={"Idempotency-Key": "k2"}).status_code == 201
        spaced = http.post("/v1/images", json={"preset": "web"}, headers={"Idempotency-Key": "two words"})
        _problem(spaced, 400, "invalid_request")


def test_a_tenant_sees_only_its_own_images_and_every_route_needs_a_key(api: Server) -> None:
    with httpx.Client(base_url=api.url, timeout=30) as http:
        mine = http.post("/v1/images", json={"preset": "web"}, headers=api.auth()).json()
        theirs = http.get(f"/v1/images/{mine['id']}", headers=api.auth(api.other_token))
        missing = http.get("/v1/images/0123456789abcdef0123", headers=api.auth(api.other_token))
        _problem(theirs, 404, "not_found")
        assert theirs.json()["detail"].replace(mine["id"], "X") == missing.json()["detail"].replace(
            "0123456789abcdef0123", "X"
        )
        for call in (
            http.post(f"/v1/images/{mine['id']}/start", headers=api.auth(api.other_token)),
            http.post(f"/v1/images/{mine['id']}/reprocess", headers=api.auth(api.other_token)),
            http.get(f"/v1/images/{mine['id']}/outputs/thumb-256", headers=api.auth(api.other_token)),
            http.get("/v1/images/..%2f..%2fetc", headers=api.auth()),
        ):
            _problem(call, 404, "not_found")

        no_key = http.get(f"/v1/images/{mine['id']}")
        _problem(no_key, 401, "unauthorized")
        assert no_key.headers["www-authenticate"] == "Bearer"
        _problem(http.get("/v1/operations", headers={"Authorization": "Bearer drk_nope"}), 401, "unauthorized")
        _problem(http.get("/v1/operations", headers={"Authorization": "Basic YTpi"}), 401, "unauthorized")
        key, token = keys.create(api.db, "initech")
        assert http.get("/v1/operations", headers=api.auth(token)).status_code == 200
        assert keys.revoke(api.db, "initech", [key.id]) == [key.id]
        _problem(http.get("/v1/operations", headers=api.auth(token)), 401, "unauthorized")
        assert http.get("/healthz").json() == {"status": "ok"}


def test_bad_requests_are_problems_with_darkroom_codes(api: Server) -> None:
    json_type = {"Content-Type": "application/json"}
    with httpx.Client(base_url=api.url, headers=api.auth(), timeout=30) as http:
        cases = [
            (http.post("/v1/images", json={"pipeline": "thumbnail:sizes=0"}), 422, "invalid_parameters"),
            (http.post("/v1/images", json={"pipeline": "sepia"}), 422, "unknown_operation"),
            (http.post("/v1/images", json={"preset": "web", "pipeline": "thumbnail"}), 422, "invalid_pipeline"),
            (http.post("/v1/images", json={}), 422, "invalid_pipeline"),
            (http.post("/v1/images", json={"preset": "web", "colour": "red"}), 422, "invalid_parameters"),
            (http.post("/v1/images", json=["web"]), 422, "invalid_parameters"),
            (http.post("/v1/images", json={"preset": "web", "callback_url": "ftp://x"}), 422, "invalid_parameters"),
            (
                http.post("/v1/images", content=b"{", headers={"Content-Type": "application/json"}),
                400,
                "invalid_request",
            ),
            (http.post("/v1/images", content=b"[" * 60000, headers=json_type), 400, "invalid_request"),
            (http.post("/v1/images/x/reprocess", content=b"[" * 60000), 400, "invalid_request"),
            (http.post("/v1/images/x/reprocess", content=b" " * 70000), 413, "file_too_large"),
            (http.post("/v1/images", content=PHOTO), 415, "unsupported_media_type"),
            (
                http.post("/v1/images?preset=web", content=b"", headers={"Content-Type": "image/jpeg"}),
                422,
                "empty_input",
            ),
            (http.post("/v1/images", files={"other": ("a", b"x")}, data={"preset": "web"}), 422, "invalid_parameters"),
            (http.delete("/v1/images/abc"), 405, "method_not_allowed"),
            (http.get("/v2/nothing"), 404, "not_found"),
        ]
        for response, status, code in cases:
            _problem(response, status, code)
        pipeline = [{"operation": "thumbnail", "params": {"sizes": "48"}}]
        assert http.post("/v1/images", json={"pipeline": pipeline}).status_code == 201
        long_spec = "enhance:strength=0.5,thumbnail:sizes=256+512+1024,format=webp,quality=80,fit=cover"
        assert http.post("/v1/images", json={"pipeline": long_spec}).status_code == 201

        ops = http.get("/v1/operations").json()
        thumbnail = next(o for o in ops["operations"] if o["name"] == "thumbnail")
        sizes = next(p for p in thumbnail["parameters"] if p["name"] == "sizes")
        assert sizes["default"] == "256" and sizes["accepts"]
        assert {p["name"] for p in ops["presets"]} == {"web", "catalog", "preview"}
        models = http.get("/v1/models").json()["models"]
        assert {m["name"] for m in models} >= {"RealESRGAN_x4plus"} and all(
            isinstance(m["present"], bool) for m in models
        )
        assert http.get("/openapi.json").json()["paths"].keys() >= {"/v1/images", "/v1/images/{image_id}"}


def test_bodies_over_the_limit_are_refused_and_the_rate_is_per_tenant(small_api: Server) -> None:
    with httpx.Client(base_url=small_api.url, headers=small_api.auth(), timeout=30) as http:
        big = b"\xff" * (64 * 1024 + 1)
        _problem(
            http.post("/v1/images?preset=web", content=big, headers={"Content-Type": "image/jpeg"}),
            413,
            "file_too_large",
        )
        _problem(http.post("/v1/images", files={"file": ("a.jpg", big)}, data={"preset": "web"}), 413, "file_too_large")

        def chunked() -> Any:
            yield big

        _problem(  # no Content-Length: counted while read
            http.post("/v1/images?preset=web", content=chunked(), headers={"Content-Type": "image/jpeg"}),
            413,
            "file_too_large",
        )
        for _ in range(2):
            assert http.get("/v1/operations").status_code == 200
        limited = http.get("/v1/operations")  # the 6th request of acme in this minute
        _problem(limited, 429, "rate_limited")
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert http.get("/v1/operations", headers=small_api.auth(small_api.other_token)).status_code == 200
