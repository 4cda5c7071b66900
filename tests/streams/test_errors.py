"""The error tree: drawn whole where it is defined, every class with its stable code."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from processors import errors as image_errors
from processors.errors import DarkroomError
from streams import errors


def _classes(module: object) -> dict[str, type[DarkroomError]]:
    return {
        name: cls
        for name, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, DarkroomError) and cls.__module__ == module.__name__  # type: ignore[attr-defined]
    }


TREE = {**_classes(image_errors), **_classes(errors)}


@pytest.mark.parametrize("name", sorted(TREE))
def test_the_drawing_names_every_class_with_its_parent_and_code(name: str) -> None:
    cls = TREE[name]
    lines = errors.__doc__.splitlines()  # type: ignore[union-attr]
    (line,) = [line for line in lines if re.search(rf"[├└]── {name}\b", line) or line.strip().startswith(name)]
    assert cls.code in line or "retryable" in line or "darkroom needs" in line  # abstract ones say what they are
    if cls is not DarkroomError:  # drawn under its parent: the nearest line above, one level less indented
        depth = line.index(name)
        parent = next(
            above for above in reversed(lines[: lines.index(line)]) if re.search(r"\w", above[: depth - 3] or "x")
        )
        assert cls.__mro__[1].__name__ in parent, (name, parent)


def test_the_image_side_draws_its_own_classes_and_defines_nothing_of_streams() -> None:
    drawn = image_errors.__doc__ or ""
    assert all(name in drawn for name in _classes(image_errors))
    assert not any(name in drawn for name in _classes(errors))


def test_streams_errors_mark_what_the_image_side_defines() -> None:
    for name in _classes(image_errors):
        (line,) = [line for line in (errors.__doc__ or "").splitlines() if re.search(rf"\b{name} \*", line)]
        assert line
    for name in _classes(errors):
        assert not re.search(rf"\b{name} \*", errors.__doc__ or "")


ABSTRACT = {"internal_error", "invalid_input", "limit_exceeded"}
"""Codes of classes only ever raised through a subclass (or, internal_error, a bug)."""


def test_the_readme_error_table_lists_every_code_with_its_retryable() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    table = readme.split("### Error codes", 1)[1].split("\n### ", 1)[0]
    rows = {m[1]: m[2] == "yes" for m in re.finditer(r"^\| `(\w+)` \| (yes|no) \|", table, re.M)}
    codes = {cls.code: cls.retryable for cls in TREE.values() if cls.code not in ABSTRACT}
    assert rows == codes
