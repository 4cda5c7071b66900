"""``/v1/images`` as its routes shape it: where the fields of a direct upload come from,
what each answer's ``Location`` names, what an id that cannot be an image's answers.

The whole flow (processing, outputs, reprocessing, retries, tenants) is
``tests/streams/api/test_api.py``'s; this server has no workers and no rate limit.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from streams.sinks.results import record_result
from tests.streams.api.conftest import Server, tiny_png

pytestmark = pytest.mark.integration


def _object_key(api: Server, image_id: str) -> str:
    with api.db.transaction() as tx:
        (row,) = tx.query("SELECT object_key FROM api_images WHERE id = ?", (image_id,))
    return str(row["object_key"])


def test_a_multipart_file_is_named_by_its_part_unless_a_field_or_the_query_names_it(open_api: Server) -> None:
    with httpx.Client(base_url=open_api.url, headers=open_api.auth(), timeout=30) as http:
        file = {"file": ("part.jpg", tiny_png(), "image/jpeg")}
        named = {
            "part.jpg": http.post("/v1/images", files=file, data={"preset": "web"}),
            "field.jpg": http.post("/v1/images", files=file, data={"preset": "web", "filename": "field.jpg"}),
            "query.jpg": http.post("/v1/images?filename=query.jpg", files=file, data={"preset": "web"}),
        }
        for name, sent in named.items():
            assert sent.status_code == 202, sent.text
            assert _object_key(open_api, sent.json()["id"]).endswith(f"/{name}")
        twice = http.post("/v1/images?preset=web", files=file, data={"preset": "web"})
        assert twice.status_code == 422 and "preset given both" in twice.json()["detail"]


def test_every_answer_that_names_an_image_says_where_it_is(open_api: Server) -> None:
    with httpx.Client(base_url=open_api.url, headers=open_api.auth(), timeout=30) as http:
        created = http.post("/v1/images", json={"preset": "web"})
        direct = http.post("/v1/images?preset=web", content=tiny_png(), headers={"Content-Type": "image/png"})
        assert (created.status_code, direct.status_code) == (201, 202)
        for sent in (created, direct):  # a path: the server knows no base URL (DARKROOM_API_PUBLIC_URL)
            assert sent.headers["location"] == sent.json()["status_url"] == f"/v1/images/{sent.json()['id']}"
        assert created.json()["start_url"] == f"{created.json()['status_url']}/start"
        assert http.get(direct.headers["location"]).json()["status"] == "processing"  # no worker will finish it
        not_started = http.post(f"{created.json()['status_url']}/reprocess")
        assert not_started.status_code == 409 and not_started.json()["code"] == "not_started"


def test_an_id_that_cannot_be_an_images_is_not_found_like_any_other(open_api: Server) -> None:
    with httpx.Client(base_url=open_api.url, headers=open_api.auth(), timeout=30) as http:
        for image_id in ("x" * 200, "-leading-dash", "a b"):
            for response in (
                http.get(f"/v1/images/{image_id}"),
                http.post(f"/v1/images/{image_id}/start"),
                http.get(f"/v1/images/{image_id}/outputs/thumb-256"),
            ):
                assert response.status_code == 404 and response.json()["code"] == "not_found", response.text


def test_a_direct_upload_that_is_not_an_image_is_refused_with_415(open_api: Server) -> None:
    """By its Content-Type (the request's, or the file part's) and by its bytes, identified as
    the operations identify their input: refused at once, not accepted to fail later."""
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>'
    with httpx.Client(base_url=open_api.url, headers=open_api.auth(), timeout=30) as http:

        def raw(data: bytes, ctype: str) -> httpx.Response:
            return http.post("/v1/images?preset=web", content=data, headers={"Content-Type": ctype})

        def part(data: bytes, ctype: str) -> httpx.Response:
            return http.post("/v1/images", files={"file": ("upload", data, ctype)}, data={"preset": "web"})

        for send in (raw, part):
            for data, ctype, code in (
                (b"hello", "image/png", "not_an_image"),
                (svg, "image/svg+xml", "not_an_image"),  # an image type, not a format darkroom reads
                (b"%PDF-1.4\n", "image/jpeg", "not_an_image"),
                (tiny_png(), "text/plain", "unsupported_media_type"),
                (tiny_png(), "application/octet-stream", "unsupported_media_type"),
            ):
                refused = send(data, ctype)
                assert refused.status_code == 415, (send.__name__, ctype, refused.text)
                assert refused.headers["content-type"] == "application/problem+json"
                assert refused.json()["code"] == code and refused.json()["type"] == f"urn:darkroom:problem:{code}"
            assert send(tiny_png(), "image/png").status_code == 202
        untyped = http.post("/v1/images", data={"preset": "web", "file": "not a file part"})
        assert untyped.status_code == 415 and untyped.json()["code"] == "unsupported_media_type"


FORGED_HOST = "evil.example"


def _names_no_host(response: httpx.Response, host: str) -> None:
    assert host not in response.text and all(host not in value for value in response.headers.values()), (
        response.headers,
        response.text,
    )


def test_no_link_is_built_from_the_host_a_client_sends(open_api: Server) -> None:
    forged = {"Host": FORGED_HOST}
    with httpx.Client(base_url=open_api.url, headers={**open_api.auth(), **forged}, timeout=30) as http:
        created = http.post("/v1/images", json={"preset": "web"})
        direct = http.post("/v1/images?preset=web", content=tiny_png(), headers={"Content-Type": "image/png"})
        image_id = created.json()["id"]
        started = http.post(f"/v1/images/{image_id}/start")  # nothing uploaded: a problem
        for sent in (created, direct, http.get(f"/v1/images/{image_id}"), started):
            _names_no_host(sent, FORGED_HOST)
        assert created.json()["start_url"] == f"/v1/images/{image_id}/start"
        assert direct.headers["location"] == f"/v1/images/{direct.json()['id']}"
        slashed = http.get(f"/v1/images/{image_id}/")  # no redirect to the other spelling, which names the Host
        assert slashed.status_code == 404 and "location" not in slashed.headers
        _names_no_host(slashed, FORGED_HOST)


def test_links_are_under_the_public_url_when_one_is_set(public_api: Server) -> None:
    base = public_api.settings.api_public_url.rstrip("/")
    with httpx.Client(base_url=public_api.url, headers={**public_api.auth(), "Host": FORGED_HOST}, timeout=30) as http:
        created = http.post("/v1/images", json={"preset": "web"})
        direct = http.post("/v1/images?preset=web", content=tiny_png(), headers={"Content-Type": "image/png"})
        image_id = created.json()["id"]
        assert created.headers["location"] == created.json()["status_url"] == f"{base}/v1/images/{image_id}"
        assert created.json()["start_url"] == f"{base}/v1/images/{image_id}/start"
        assert direct.headers["location"] == direct.json()["status_url"] == f"{base}/v1/images/{direct.json()['id']}"
        for sent in (created, direct):
            _names_no_host(sent, FORGED_HOST)


def _stored_result(api: Server, image_id: str, source_key: str, outputs: list[dict[str, Any]]) -> None:
    """A completed result row for ``image_id``, written as the result writer writes one (a
    forged or damaged row: the writer itself refuses outputs outside the image's prefix)."""
    when = datetime(2026, 1, 1, tzinfo=UTC)
    event = {
        "image_id": image_id,
        "upload_event_id": f"forged-{image_id}",
        "event_id": f"forged-final-{image_id}",
        "outputs": outputs,
        "timings": [],
        "tenant": "acme",
        "bucket": api.settings.bucket,
        "source_key": source_key,
        "submitted_at": when,
        "completed_at": when,
    }
    with api.db.transaction() as tx:
        assert record_result(tx, "completed", event)


def _output(api: Server, name: str, key: str, bucket: str | None = None) -> dict[str, Any]:
    return {
        "step_index": 0,
        "operation": "thumbnail",
        "name": name,
        "bucket": bucket or api.settings.bucket,
        "key": key,
        "size": 1,
        "width": 1,
        "height": 1,
        "content_type": "image/png",
        "sha256": "0" * 64,
    }


def test_only_an_images_own_outputs_of_its_own_upload_are_presigned(open_api: Server) -> None:
    """Rows the API reads could name any object: an output of another image, another
    tenant's upload, the broker's log; or be made of another object under a foreseen id.
    None of it is presigned or shown."""
    prefix = open_api.settings.output_prefix
    with httpx.Client(base_url=open_api.url, headers=open_api.auth(), timeout=30) as http:
        image = http.post("/v1/images", json={"pipeline": "thumbnail"}).json()
        own = f"{prefix}/{image['id']}/00-thumbnail-{'a' * 16}/thumb-256.png"
        _stored_result(
            open_api,
            image["id"],
            _object_key(open_api, image["id"]),
            [
                _output(open_api, "thumb-256", own),
                _output(open_api, "theirs", "uploads/someone-else/p.jpg"),
                _output(open_api, "other-image", f"{prefix}/other-image/00-thumbnail-{'a' * 16}/thumb-256.png"),
                _output(
                    open_api, "log", "clusters/tansu/topics/x/0/0", bucket=f"{open_api.settings.bucket}-broker-log"
                ),
            ],
        )
        shown = http.get(image["status_url"]).json()
        assert shown["status"] == "completed" and [o["name"] for o in shown["outputs"]] == ["thumb-256"]
        assert f"/{own}?" in shown["outputs"][0]["url"]
        for name in ("theirs", "other-image", "log"):
            assert http.get(f"{image['status_url']}/outputs/{name}").status_code == 404

        foreseen = http.post("/v1/images", json={"pipeline": "thumbnail"}).json()
        made_of_another = f"{prefix}/{foreseen['id']}/00-thumbnail-{'b' * 16}/thumb-256.png"
        _stored_result(
            open_api, foreseen["id"], "uploads/someone-else/p.jpg", [_output(open_api, "t", made_of_another)]
        )
        shown = http.get(foreseen["status_url"]).json()
        assert shown["status"] == "pending" and shown["outputs"] == []  # the result is not of its upload
