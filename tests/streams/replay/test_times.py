"""Durations and datetimes as operators type them (``replay --since``, ``groups reset``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from streams.replay.times import parse_datetime, parse_duration, parse_time


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2h", timedelta(hours=2)),
        ("30m", timedelta(minutes=30)),
        ("45s", timedelta(seconds=45)),
        ("7d", timedelta(days=7)),
        ("1w", timedelta(weeks=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1.5h", timedelta(minutes=90)),
        ("P1D", timedelta(days=1)),
        ("PT2H", timedelta(hours=2)),
        ("P1DT2H30M", timedelta(days=1, hours=2, minutes=30)),
        ("PT0.5S", timedelta(milliseconds=500)),
        ("P2W", timedelta(weeks=2)),
        ("pt15m", timedelta(minutes=15)),
        (" 2h ", timedelta(hours=2)),
    ],
)
def test_durations_in_short_and_iso_form(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["", "2", "h", "-2h", "2 h", "P", "PT", "P1DT", "PT5", "P1Y", "P1M", "2026-11-30T12:00Z", "yesterday"]
)
def test_what_is_not_a_duration_is_refused(text: str) -> None:
    """ISO years and months have no fixed length; a datetime must fail here so it is tried next."""
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-30T12:00Z", datetime(2026, 11, 30, 12, 0, tzinfo=UTC)),
        ("2026-11-30T12:00:05+02:00", datetime(2026, 11, 30, 10, 0, 5, tzinfo=UTC)),
        ("2026-11-30T12:00", datetime(2026, 11, 30, 12, 0, tzinfo=UTC)),
        ("2026-11-30 12:00:00", datetime(2026, 11, 30, 12, 0, tzinfo=UTC)),
        ("2026-11-30", datetime(2026, 11, 30, tzinfo=UTC)),
    ],
)
def test_datetimes_are_utc_and_naive_means_utc(text: str, expected: datetime) -> None:
    parsed = parse_datetime(text)
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize("text", ["", "2h", "P1D", "yesterday", "2026-13-01", "30/11/2026"])
def test_what_is_not_a_datetime_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not an ISO 8601"):
        parse_datetime(text)


def test_a_time_is_a_duration_ago_or_a_datetime() -> None:
    """``replay --since/--until``: either form; a datetime is not misread as a duration."""
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    assert parse_time("2h", now) == datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    assert parse_time("P1D", now) == datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    assert parse_time("2026-11-30T09:00", now) == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="expected ISO 8601 or a duration such as 2h or P1D, got 'yesterday'"):
        parse_time("yesterday", now)
