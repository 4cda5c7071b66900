"""A loopback receiver per test, and the attempt's HTTP client as ``send`` expects it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import pytest

from streams.sinks.webhooks.attempt import new_client
from tests.streams.sinks.webhooks.loopback import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def client() -> Iterator[httpx2.Client]:
    with new_client(timeout_s=5) as c:
        yield c
