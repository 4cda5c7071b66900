"""The README is the user's contract: it must stay true to the code."""

from __future__ import annotations

import inspect
import re
from dataclasses import fields
from pathlib import Path

from processors import errors
from streams.config import PREFIX, Settings
from streams.wire.pipeline import PRESETS

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_it_opens_with_exactly_two_commands() -> None:
    first_block = re.search(r"```sh\n(.*?)```", README, re.S)
    assert first_block is not None and README.index("```sh") < README.index("\n\n", README.index("# darkroom") + 11)
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M)


def test_every_setting_is_documented() -> None:
    for f in fields(Settings):
        assert f"{PREFIX}{f.name.upper()}" in README, f"{PREFIX}{f.name.upper()} is not in the README"


def test_every_error_code_is_documented() -> None:
    codes = {
        cls.code
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.DarkroomError)
        and cls.code not in {"internal_error", "invalid_input", "limit_exceeded"}
    }
    for code in codes:
        assert f"`{code}`" in README, f"error code {code} is not in the README"


def test_presets_are_documented_as_they_are() -> None:
    for name, spec in PRESETS.items():
        assert f"`{name}` (`{spec}`)" in README


def test_the_backends_listed_are_those_the_events_carry() -> None:
    from processors.upscale.engine import BACKENDS

    listed = re.search(r"Backends in events:(.*?)\.\n", README, re.S)
    assert listed is not None
    names = set(re.findall(r"`([^`]+)`", listed.group(1))) - {"precision=exact"}
    assert names == {"pillow", *BACKENDS}


def test_the_metrics_table_lists_exactly_the_metrics_exported() -> None:
    from streams.observe.metrics import NAMES

    start = README.index("| metric | type | labels | what |")
    table = README[start : README.index("\n\n", start)]
    assert set(re.findall(r"^\| `(darkroom_[a-z_]+)` \|", table, re.M)) == set(NAMES)


def test_the_parameter_tables_agree_with_the_operations() -> None:
    """Every parameter and default in the README's tables is what `darkroom operations` reads from the code."""
    from processors import AVAILABLE_OPERATIONS, get_operation
    from processors.registry import describe

    for name in AVAILABLE_OPERATIONS:
        start = README.index(f"`{name}` parameters")
        table = README[README.index("| key |", start) : README.index("\n\n", README.index("| key |", start))]
        documented = {}
        for row in table.splitlines()[2:]:
            keys_cell, _, default_cell = row.strip("|").split(" | ", 2)
            keys = re.findall(r"`([a-z_]+)`", keys_cell)
            defaults = re.findall(r"`([^`]+)`", default_cell)
            documented.update(zip(keys, defaults, strict=True))
        actual = {p["name"]: p["default"] for p in describe(get_operation(name))}
        assert documented == actual, name
