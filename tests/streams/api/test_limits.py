"""Each bound is where the document says it is: one character, one step, one byte over it is refused, at it is not.

Against a running server (``open_api``: 1 KiB images), through every way a
field arrives: a JSON body, a raw body's query string, a multipart text field.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from streams.api.limits import MAX_FILENAME, MAX_FORM_FIELDS, MAX_JSON_BYTES, MAX_NAME, MAX_TEXT, MAX_VALUE
from streams.wire.pipeline import MAX_STEPS
from tests.streams.api.conftest import Server, tiny_png

pytestmark = pytest.mark.integration

BOUNDS = {"pipeline": MAX_TEXT, "preset": MAX_NAME, "callback_url": MAX_TEXT, "filename": MAX_FILENAME}
"""The text fields of ``POST /v1/images``, however they arrive."""


@pytest.fixture(scope="module")
def http(open_api: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=open_api.url, headers=open_api.auth(), timeout=30) as client:
        yield client


def test_the_document_states_the_same_bounds_for_json_the_query_string_and_multipart(http: httpx.Client) -> None:
    doc = http.get("/openapi.json").json()
    create = doc["paths"]["/v1/images"]["post"]
    query = {p["name"]: p["schema"]["anyOf"][0] for p in create["parameters"]}
    multipart = create["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    json_body = doc["components"]["schemas"]["CreateImage"]["properties"]
    for name, bound in BOUNDS.items():
        (text,) = (s for s in json_body[name]["anyOf"] if s.get("type") == "string")
        assert query[name] == multipart[name] == text and text["maxLength"] == bound
    step = doc["components"]["schemas"]["Step"]
    assert step["properties"]["operation"]["maxLength"] == step["properties"]["params"]["propertyNames"]["maxLength"]
    assert [v["maxLength"] for v in step["properties"]["params"]["patternProperties"].values()] == [MAX_VALUE]
    (steps,) = (s for s in json_body["pipeline"]["anyOf"] if s.get("type") == "array")
    assert steps["maxItems"] == MAX_STEPS


def _send(http: httpx.Client, how: str, fields: dict[str, str]) -> httpx.Response:
    if how == "json":
        return http.post("/v1/images", json=fields)
    if how == "query":
        return http.post("/v1/images", params=fields, content=tiny_png(), headers={"Content-Type": "image/png"})
    return http.post("/v1/images", files={"file": ("p.png", tiny_png())}, data=fields)


def _refused_for(response: httpx.Response, field: str) -> bool:
    """Whether the answer is a 422 that names ``field`` among the fields that did not validate."""
    body: dict[str, Any] = response.json()
    return response.status_code == 422 and any(field in e["loc"] for e in body.get("errors", ()))


FIELDS = [
    ("pipeline", {}, lambda n: "thumbnail:sizes=64".ljust(n)),
    ("preset", {}, lambda n: "w" * n),
    ("callback_url", {"preset": "web"}, lambda n: "https://example.com/".ljust(n, "a")),
    ("filename", {"preset": "web"}, lambda n: ("a" * n)[:-4] + ".jpg"),
]


@pytest.mark.parametrize("how", ["json", "query", "multipart"])
@pytest.mark.parametrize(("field", "others", "value"), FIELDS, ids=[f[0] for f in FIELDS])
def test_a_text_field_one_character_over_its_bound_is_refused(
    http: httpx.Client, how: str, field: str, others: dict[str, str], value: Any
) -> None:
    bound = BOUNDS[field]
    at = _send(http, how, {**others, field: value(bound)})
    assert not _refused_for(at, field), at.text  # another answer: a created image, an unknown preset…
    over = _send(http, how, {**others, field: value(bound + 1)})
    assert _refused_for(over, field) and over.json()["code"] == "invalid_parameters", over.text


def test_a_step_is_bounded_like_a_field_and_a_pipeline_by_its_steps(http: httpx.Client) -> None:
    def create(*steps: dict[str, Any]) -> httpx.Response:
        return http.post("/v1/images", json={"pipeline": list(steps)})

    assert create({"operation": "o" * MAX_NAME}).json()["code"] == "unknown_operation"
    assert _refused_for(create({"operation": "o" * (MAX_NAME + 1)}), "operation")
    at = create({"operation": "thumbnail", "params": {"format": "v" * MAX_VALUE}})
    assert at.json()["code"] == "invalid_parameters" and not _refused_for(at, "params")  # the operation's own check
    assert _refused_for(create({"operation": "thumbnail", "params": {"format": "v" * (MAX_VALUE + 1)}}), "params")
    assert _refused_for(create({"operation": "thumbnail", "params": {"f" * (MAX_NAME + 1): "1"}}), "params")
    thumbnail = {"operation": "thumbnail", "params": {"sizes": "32"}}
    assert create(*[thumbnail] * MAX_STEPS).status_code == 201
    over = create(*[thumbnail] * (MAX_STEPS + 1))
    spec = http.post("/v1/images", json={"pipeline": ",".join(["thumbnail:sizes=32"] * (MAX_STEPS + 1))})
    assert (
        over.status_code == spec.status_code == 422 and over.json()["code"] == spec.json()["code"] == "invalid_pipeline"
    )


def test_bodies_are_bounded_by_their_bytes_and_multipart_by_its_fields(open_api: Server, http: httpx.Client) -> None:
    max_file = open_api.settings.max_file_bytes
    preset = b'{"preset": "web"}'
    json_type = {"Content-Type": "application/json"}
    assert http.post("/v1/images", content=preset.ljust(MAX_JSON_BYTES), headers=json_type).status_code == 201
    assert http.post("/v1/images", content=preset.ljust(MAX_JSON_BYTES + 1), headers=json_type).status_code == 413
    image = {"Content-Type": "image/png"}
    assert http.post("/v1/images?preset=web", content=tiny_png(max_file), headers=image).status_code == 202
    assert http.post("/v1/images?preset=web", content=tiny_png(max_file + 1), headers=image).status_code == 413
    for size, status in ((max_file, 202), (max_file + 1, 413)):
        sent = http.post("/v1/images", files={"file": ("p.png", tiny_png(size))}, data={"preset": "web"})
        assert sent.status_code == status, sent.text
    fields = {"preset": "web", **{f"x{i}": "1" for i in range(MAX_FORM_FIELDS)}}
    too_many = http.post("/v1/images", files={"file": ("p.png", tiny_png())}, data=fields)
    assert too_many.status_code == 400 and too_many.json()["code"] == "invalid_request"
