"""The rate limit per tenant: a moving window of 60 s, off at 0."""

from __future__ import annotations

import pytest

from streams.api.problems import ApiProblem
from streams.api.rate import RateLimit


def test_a_tenant_over_its_rate_is_told_when_to_retry_and_others_are_not_counted() -> None:
    rate = RateLimit(3)
    for _ in range(3):
        rate.hit("acme")
    with pytest.raises(ApiProblem) as limited:
        rate.hit("acme")
    assert limited.value.code == "rate_limited"
    assert 1 <= int(limited.value.headers["Retry-After"]) <= 60
    rate.hit("globex")


def test_zero_counts_nothing() -> None:
    rate = RateLimit(0)
    for _ in range(1000):
        rate.hit("acme")
