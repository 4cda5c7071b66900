"""Times and durations as operators type them: ``2h``, ``30m``, ``P1D``, ``2026-11-30T12:00Z``.

One parser each, shared by ``replay --since/--until`` (``parse_time``: either, a duration
meaning that long ago) and ``groups reset --to-datetime / --by-duration``, so both
commands read the same text the same way.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
_SHORT = re.compile(r"(?:\d+(?:\.\d+)?[wdhms])+", re.I)
_SHORT_PART = re.compile(r"(\d+(?:\.\d+)?)([wdhms])", re.I)
_ISO = re.compile(
    r"P(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?",
    re.I,
)


def parse_duration(text: str) -> timedelta:
    """``2h``, ``30m``, ``1h30m``, ``7d``, ``1w`` or ISO 8601 (``P1D``, ``PT2H``, ``P1DT30M``).

    ISO years and months are refused: their length depends on the date. Raises
    ``ValueError`` for anything else (an ISO datetime included), so callers can try
    :func:`parse_datetime` next.
    """
    text = text.strip()
    if _SHORT.fullmatch(text):
        return timedelta(**{_UNITS[u.lower()]: float(n) for n, u in _SHORT_PART.findall(text)})
    iso = _ISO.fullmatch(text)
    if iso and len(text) > 1:  # "P" alone names no duration
        return timedelta(**{unit: float(n) for unit, n in iso.groupdict().items() if n is not None})
    raise ValueError(f"not a duration (2h, 30m, P1D, PT2H): {text!r}")


def parse_datetime(text: str) -> datetime:
    """An ISO 8601 date or time (``2026-11-30``, ``2026-11-30T12:00Z``), as an aware UTC datetime.

    A time without offset means UTC, not the machine's zone: the same command gives the
    same answer wherever it runs. Raises ``ValueError`` for anything else.
    """
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"not an ISO 8601 date or time: {text!r}") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """A duration ago (``2h``, ``P1D``: ``now`` minus it) or an ISO 8601 time (naive means
    UTC), as an aware UTC datetime. Raises ``ValueError`` for anything else."""
    try:
        return (now or datetime.now(UTC)) - parse_duration(text)
    except ValueError:
        pass
    try:
        return parse_datetime(text)
    except ValueError:
        raise ValueError(f"expected ISO 8601 or a duration such as 2h or P1D, got {text!r}") from None
