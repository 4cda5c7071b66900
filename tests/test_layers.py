"""The arrows between rooms point one way (README, *Layout*).

Read from the source with ``ast``, so an import inside a function or under
``TYPE_CHECKING`` counts like any other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

_FOUNDATION = {"processors", "streams.errors", "streams.config"}
ALLOWED: dict[str, set[str]] = {
    "processors": {"processors"},
    "streams.errors": {"processors"},
    "streams.config": {"processors", "streams.errors"},
    "streams.observe": _FOUNDATION,
    "streams.runtime": _FOUNDATION | {"streams.observe"},
    "streams.wire": _FOUNDATION,
    "streams.handlers": _FOUNDATION | {"streams.observe", "streams.runtime", "streams.wire"},
    "streams.sinks": _FOUNDATION | {"streams.observe", "streams.runtime", "streams.wire"},
    "streams.client": _FOUNDATION | {"streams.runtime", "streams.wire"},
    "streams.services": _FOUNDATION
    | {
        "streams.observe",
        "streams.runtime",
        "streams.wire",
        "streams.handlers",
        "streams.sinks",
        "streams.notifications",
    },
    "streams.replay": _FOUNDATION | {"streams.runtime", "streams.wire", "streams.sinks"},
    "streams.notifications": _FOUNDATION | {"streams.observe", "streams.runtime", "streams.wire"},
    "streams.api": _FOUNDATION
    | {"streams.observe", "streams.runtime", "streams.wire", "streams.sinks", "streams.replay", "streams.client"},
    "streams": _FOUNDATION | {"streams.client"},
    "streams.dev": _FOUNDATION
    | {"streams.runtime", "streams.wire", "streams.handlers", "streams.client", "streams.services"},
    "streams.cli": _FOUNDATION
    | {
        "streams.runtime",
        "streams.wire",
        "streams.handlers",
        "streams.sinks",
        "streams.client",
        "streams.services",
        "streams.dev",
        "streams.replay",
        "streams.observe",
        "streams.notifications",
        "streams.api",
    },
}
"""Room → the rooms it may import (besides itself). Nothing may import ``streams.cli``."""


def room_of(module: str) -> str:
    """``streams.runtime.worker`` → ``streams.runtime``; ``processors.upscale.op`` → ``processors``."""
    parts = module.split(".")
    if parts[0] == "processors":
        return "processors"
    if len(parts) == 1 or parts[1] == "__init__":
        return "streams"
    return f"streams.{parts[1]}"


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    return ".".join(rel.parts)


def imported_modules(path: Path) -> set[str]:
    """Every darkroom module ``path`` imports; ``from a import b`` counts as ``a.b``, which may be a module."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import; darkroom imports absolutely, so arrows can be read"
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {m for m in found if m.split(".")[0] in {"streams", "processors"}}


def _violations() -> list[str]:
    bad = []
    for path in sorted([*ROOT.glob("streams/**/*.py"), *ROOT.glob("processors/**/*.py")]):
        source = room_of(_module_name(path))
        for target in sorted(imported_modules(path)):
            dest = room_of(target)
            if dest != source and dest not in ALLOWED[source]:
                bad.append(f"{path.relative_to(ROOT)} imports {target} ({source} → {dest})")
    return bad


def test_the_arrows_point_one_way() -> None:
    assert _violations() == []


@pytest.mark.parametrize(
    ("module", "room"),
    [
        ("streams.runtime.worker", "streams.runtime"),
        ("streams.cli", "streams.cli"),
        ("streams.config", "streams.config"),
        ("streams.__init__", "streams"),
        ("processors.upscale.engine", "processors"),
    ],
)
def test_rooms_are_named_by_their_package(module: str, room: str) -> None:
    assert room_of(module) == room


def test_a_forbidden_arrow_would_be_found(tmp_path: Path) -> None:
    """The check can fail: an import of the CLI from the loop is seen, even inside a function."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from streams.cli import main\n    from streams import dev\n")
    assert imported_modules(probe) == {"streams.cli.main", "streams.dev"}
    assert room_of("streams.cli.main") not in ALLOWED["streams.runtime"]
