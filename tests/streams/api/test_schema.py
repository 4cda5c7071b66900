"""A bounded schemathesis run against ``/openapi.json`` of a running server: whatever it
sends (inside the schema and outside it), no answer is a 5xx and every answer matches the
schema documented for its status.

Driven through schemathesis' Hypothesis strategies, one operation at a time: its pytest
loader (``schemathesis.pytest.from_fixture``) reads ``Function._nodeid``, which pytest 9
no longer has. Routes of one image run twice: with generated ids (404s) and with the id
of a real, completed image, so that full answers are checked too.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from streams.dev.samples import photo_jpeg
from tests.streams.api.conftest import Server

pytestmark = pytest.mark.integration

EXAMPLES = 50
"""Per operation, mode and kind of id: about 15 s in all on the development machine."""


@pytest.fixture(scope="module")
def completed(busy_api: Server) -> str:
    with httpx.Client(base_url=busy_api.url, headers=busy_api.auth(), timeout=30) as http:
        image_id = http.post(
            "/v1/images?preset=web", content=photo_jpeg(320, 240, seed=1), headers={"Content-Type": "image/jpeg"}
        ).json()["id"]
        deadline = time.monotonic() + 60
        while http.get(f"/v1/images/{image_id}").json()["status"] != "completed":
            assert time.monotonic() < deadline
            time.sleep(0.2)
    return str(image_id)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
def test_no_answer_is_a_server_error_or_off_the_schema(busy_api: Server, completed: str, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(f"{busy_api.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 8
    runs: list[tuple[str, Any, dict[str, str] | None]] = []
    for op in operations:
        runs.append((op.label, op, None))
        if "{image_id}" in op.path:
            runs.append((f"{op.label} (a real image)", op, {"image_id": completed, "name": "thumb-256"}))
    failures: dict[str, BaseException] = {}
    for label, op, path in runs:
        fixed = None if path is None else {k: v for k, v in path.items() if "{" + k + "}" in op.path}

        @given(case=op.as_strategy(generation_mode=mode, path_parameters=fixed))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=busy_api.auth(), checks=[not_a_server_error, response_schema_conformance])

        try:
            check()
        except Unsatisfiable:  # nothing to break in a request without parameters (negative mode)
            continue
        except Exception as exc:  # every operation is checked; all failures are reported together
            failures[label] = exc
    assert not failures, "\n\n".join(f"{label}:\n{exc}" for label, exc in failures.items())
