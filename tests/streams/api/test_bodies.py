"""Bodies bounded before and while they are read; JSON and multipart parsed into darkroom's errors."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import httpx
import pytest
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from streams.api import bodies
from streams.api.limits import MAX_FORM_FIELDS, MULTIPART_OVERHEAD_BYTES
from streams.api.problems import ApiProblem
from streams.api.schemas import Reprocess


class Body:
    """An ASGI request body sent in ``chunks``, recording how much of it was read."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.chunks = list(chunks)
        self.read = 0

    async def receive(self) -> dict[str, Any]:
        chunk = self.chunks[self.read] if self.read < len(self.chunks) else b""
        self.read += 1
        return {"type": "http.request", "body": chunk, "more_body": self.read < len(self.chunks)}


def _request(body: Body, headers: dict[str, str]) -> Request:
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/images",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "app": None,  # as under an app: a malformed multipart body is an HTTP 400
    }
    return Request(scope, body.receive)


def _code(call: Any) -> str:
    with pytest.raises(ApiProblem) as raised:
        asyncio.run(call)
    return raised.value.code


def test_a_body_is_refused_from_its_content_length_before_anything_is_read() -> None:
    body = Body([b"x" * 11])
    assert _code(bodies.read(_request(body, {"Content-Length": "11"}), 10)) == "file_too_large"
    assert body.read == 0
    for bad in ("ten", "-1", "1e3", "²"):
        assert _code(bodies.read(_request(Body([b"x"]), {"Content-Length": bad}), 10)) == "invalid_request"


def test_a_body_without_a_length_is_counted_while_it_is_read() -> None:
    assert asyncio.run(bodies.read(_request(Body([b"12345", b"67890"]), {}), 10)) == b"1234567890"
    body = Body([b"12345", b"67890", b"1", b"never read"])
    assert _code(bodies.read(_request(body, {}), 10)) == "file_too_large"
    assert body.read == 3


def test_json_that_does_not_parse_is_a_bad_request_and_one_that_does_not_validate_names_its_fields() -> None:
    for raw in (b"{", b"\xff", b"[" * 60000):
        with pytest.raises(ApiProblem) as raised:
            bodies.parsed(raw)
        assert raised.value.code == "invalid_request"
    assert bodies.validated(Reprocess, bodies.parsed(b'{"force": true}')).force is True
    with pytest.raises(RequestValidationError) as invalid:
        bodies.validated(Reprocess, {"force": "maybe", "colour": "red"})
    assert {e["loc"] for e in invalid.value.errors()} == {("force",), ("colour",)}
    assert all("input" not in e for e in invalid.value.errors())  # it may be large or secret


def _multipart(**kwargs: Any) -> Request:
    encoded = httpx.Request("POST", "http://api/v1/images", **kwargs)
    return _request(Body([encoded.read()]), dict(encoded.headers))


def test_a_multipart_body_gives_its_file_and_text_fields() -> None:
    form = asyncio.run(
        bodies.multipart(_multipart(files={"file": ("../x/p.jpg", b"JPEG", "image/jpeg")}, data={"preset": "web"}), 10)
    )
    assert (form.fields, form.data, form.content_type, form.filename) == (
        {"preset": "web"},
        b"JPEG",
        "image/jpeg",
        "p.jpg",
    )
    text = asyncio.run(bodies.multipart(_multipart(data={"file": "bytes", "preset": "web"}), 10))
    assert (text.data, text.content_type, text.filename) == (b"bytes", None, None)


def test_a_multipart_body_is_refused_over_its_bounds() -> None:
    file = {"file": ("p.jpg", b"x" * 11)}
    assert _code(bodies.multipart(_multipart(files=file), 10)) == "file_too_large"
    huge = {"file": ("p.jpg", b"x" * (10 + MULTIPART_OVERHEAD_BYTES))}
    assert _code(bodies.multipart(_multipart(files=huge), 10)) == "file_too_large"  # before it is parsed
    assert _code(bodies.multipart(_multipart(data={"preset": "web"}), 10)) == "invalid_parameters"  # no file
    preset_as_a_file = _multipart(files={"preset": ("web.txt", b"web")}, data={"file": "x"})
    assert _code(bodies.multipart(preset_as_a_file, 10)) == "invalid_parameters"
    two_files = {"file": ("p.jpg", b"x"), "other": ("q.jpg", b"x")}
    many_fields = {f"f{i}": "x" for i in range(MAX_FORM_FIELDS + 1)}
    for malformed in (_multipart(files=two_files), _multipart(files={"file": ("p.jpg", b"x")}, data=many_fields)):
        with pytest.raises(HTTPException) as refused:  # Starlette's parser: answered as invalid_request
            asyncio.run(bodies.multipart(malformed, 10))
        assert refused.value.status_code == 400
