"""The README is the user's contract: it must stay true to the code."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from processors import errors
from streams import errors as streams_errors
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


def _configuration_table() -> dict[str, str | None]:
    """The README's Configuration table: each variable → the default its row writes as a
    value (``None`` where the row describes it in words: *(embedded)*, *(none)*…)."""
    section = README[README.index("## Configuration") :]
    section = section[: section.index("\n## ", 1)]
    rows: dict[str, str | None] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`DARKROOM_"):
            names = re.findall(r"`(DARKROOM_[A-Z0-9_]+)`", cells[0])
            values: list[str | None] = list(re.findall(r"`([^`]*)`", cells[1])) if cells[1].startswith("`") else []
            if len(values) != len(names):  # one value per name, or the row's first for a single name
                values = values[:1] if len(names) == 1 and values else [None] * len(names)
            rows.update(zip(names, values, strict=True))
    return rows


def test_the_configuration_table_is_the_settings_model() -> None:
    """Every setting has a row and every row a setting; a default the table writes as a
    value is the model's default, as ``to_env`` writes it."""
    table = _configuration_table()
    assert set(table) == {PREFIX + name.upper() for name in Settings.model_fields}
    defaults = Settings.model_construct().to_env()
    written = {name: value for name, value in table.items() if value is not None}
    assert len(written) >= 40
    for name, value in written.items():
        shown = str(Path(value).expanduser()) if value.startswith("~") else value
        assert _same(shown, defaults[name]), (name, value, defaults[name])


def _same(shown: str, default: str) -> bool:
    """``10`` is ``10.0``; ``0,5`` is ``0.0,5.0``."""
    try:
        return [float(x) for x in shown.split(",")] == [float(x) for x in default.split(",")]
    except ValueError:
        return shown == default


def test_every_error_code_is_documented() -> None:
    codes = {
        cls.code
        for module in (errors, streams_errors)
        for _, cls in inspect.getmembers(module, inspect.isclass)
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
    assert names == {"pillow", "opencv", *BACKENDS}


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


def test_every_module_has_a_test_file_or_says_where_it_is_covered() -> None:
    section = README[README.index("Tests mirror modules:") :]
    section = section[: section.index("\n\n`make bench`")]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    covered = {
        module for row in rows for module in re.findall(r"`((?:streams|processors)/[\w/]+\.py)`", row.split("|")[1])
    }
    root = Path(__file__).resolve().parent.parent
    for row in rows:  # every file a row names exists
        for path in re.findall(r"`(tests/[\w/]+\.py)`", row):
            assert (root / path).exists(), path
    modules = [
        p.relative_to(root).as_posix()
        for top in ("streams", "processors")
        for p in (root / top).rglob("*.py")
        if p.name not in {"__init__.py", "__main__.py"}
    ]
    missing = [
        m
        for m in modules
        if not (root / "tests" / Path(m).parent / f"test_{Path(m).name}").exists() and m not in covered
    ]
    assert missing == []
    stale = sorted(m for m in covered if (root / "tests" / Path(m).parent / f"test_{Path(m).name}").exists())
    assert stale == [], "these have a test file of their own now: drop their rows"
