"""Step parameters: ``key=value`` strings into typed values, with one error style.

Each operation declares a table ``{key: parser}``. A parser takes the raw string and
returns the typed value, or raises ``ValueError`` saying what it expected; ``parse_fields``
rejects unknown keys and turns a parser's ``ValueError`` into one ``InvalidParameters``
that names the operation, the key, the value and the expectation. The options several
operations share (output format, quality, booleans, bounded numbers) are parsed here once.

``quality`` is an integer or ``auto`` (``processors.quality``); ``quality_target``, the
SSIMULACRA2 score auto aims for, is folded into it by ``parse_fields`` (and rejected
without auto); ``processors.quality.canonical`` spells both back for ``canonical_params``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from processors.errors import InvalidParameters
from processors.image import AUTO, FORMATS, OutputFormat
from processors.quality import MAX_TARGET, MIN_TARGET, AutoQuality, Quality

Parser = Callable[[str], Any]

_NUMBER = re.compile(r"[+-]?(?:[0-9]{1,3}(?:\.[0-9]{1,3})?|\.[0-9]{1,3})", re.ASCII)


def parse_fields(operation: str, raw: Mapping[str, str], parsers: Mapping[str, Parser]) -> dict[str, Any]:
    """Typed values for the keys given; defaults are the params dataclass's business."""
    unknown = sorted(set(raw) - set(parsers))
    if unknown:
        names = ", ".join(repr(key) for key in unknown)
        raise InvalidParameters(f"{operation}: unknown parameter {names}; known: {', '.join(parsers)}")
    values = {}
    for key, value in raw.items():
        try:
            values[key] = parsers[key](value)
        except ValueError as exc:
            raise InvalidParameters(f"{operation}: invalid {key}={value!r}: expected {exc}") from None
    if "quality_target" in values:
        if not isinstance(values.get("quality"), AutoQuality):
            raise InvalidParameters(f"{operation}: quality_target needs quality=auto")
        values["quality"] = AutoQuality(values.pop("quality_target"))
    return values


def number(value: str, low: float, high: float, expected: str) -> float:
    """A short decimal (``+0.6``, ``1.25``) within ``[low, high]``."""
    if not _NUMBER.fullmatch(value) or not low <= float(value) <= high:
        raise ValueError(expected)
    return float(value) + 0.0  # -0 → 0


def output_format(value: str) -> OutputFormat | None:
    """A format by name, or None for ``auto`` (``processors.image.format_for`` decides per image)."""
    if value == AUTO:
        return None
    fmt = FORMATS.get(value)
    if fmt is None:
        raise ValueError("auto, jpeg, jpg, webp, avif or png")
    return fmt


def quality(value: str) -> Quality:
    """An encoder quality 1..100, or ``auto``: the lowest that scores ``quality_target``."""
    if value == AUTO:
        return AutoQuality()
    if not re.fullmatch(r"[0-9]{1,3}", value, re.ASCII) or not 1 <= int(value) <= 100:
        raise ValueError("auto or an integer 1..100")
    return int(value)


def quality_target(value: str) -> float:
    """The SSIMULACRA2 score ``quality=auto`` must reach (``processors.quality``)."""
    return number(value, MIN_TARGET, MAX_TARGET, f"an SSIMULACRA2 score {MIN_TARGET:g}..{MAX_TARGET:g}")


def boolean(value: str) -> bool:
    if value not in ("true", "false"):
        raise ValueError("true or false")
    return value == "true"
