"""``/v1/images`` as its routes shape it: where the fields of a direct upload come from,
what each answer's ``Location`` names, what an id that cannot be an image's answers.

The whole flow (processing, outputs, reprocessing, retries, tenants) is
``tests/streams/api/test_api.py``'s; this server has no workers and no rate limit.
"""

from __future__ import annotations

import httpx
import pytest

from tests.streams.api.conftest import Server

pytestmark = pytest.mark.integration


def _object_key(api: Server, image_id: str) -> str:
    with api.db.transaction() as tx:
        (row,) = tx.query("SELECT object_key FROM api_images WHERE id = ?", (image_id,))
    return str(row["object_key"])


def test_a_multipart_file_is_named_by_its_part_unless_a_field_or_the_query_names_it(open_api: Server) -> None:
    with httpx.Client(base_url=open_api.url, headers=open_api.auth(), timeout=30) as http:
        file = {"file": ("part.jpg", b"bytes", "image/jpeg")}
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
        direct = http.post("/v1/images?preset=web", content=b"bytes", headers={"Content-Type": "image/jpeg"})
        assert (created.status_code, direct.status_code) == (201, 202)
        for sent in (created, direct):
            assert (
                sent.headers["location"] == sent.json()["status_url"] == f"{open_api.url}/v1/images/{sent.json()['id']}"
            )
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
