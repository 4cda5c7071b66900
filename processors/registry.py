"""Operation lookup by name.

``_PLANNED`` holds names that are part of the product's contract but not built yet (none
at present): they fail with ``operation_unavailable`` instead of pretending to work.
"""

from __future__ import annotations

from processors.cutout import CUTOUT
from processors.enhance import ENHANCE
from processors.errors import InvalidParameters, OperationUnavailable, UnknownOperation
from processors.operation import Operation
from processors.thumbnail import THUMBNAIL
from processors.upscale import UPSCALE

_AVAILABLE: dict[str, Operation] = {
    CUTOUT.name: CUTOUT,
    ENHANCE.name: ENHANCE,
    THUMBNAIL.name: THUMBNAIL,
    UPSCALE.name: UPSCALE,
}
_PLANNED: frozenset[str] = frozenset()
KNOWN_OPERATIONS = tuple(sorted(set(_AVAILABLE) | _PLANNED))
AVAILABLE_OPERATIONS = tuple(sorted(_AVAILABLE))


def describe(op: Operation) -> list[dict[str, str]]:
    """Each parameter of ``op``: its default and what it accepts, units included.

    Read from the operation itself, so it cannot drift: the defaults are the canonical
    params of an empty request, and what a parameter accepts is what its parser says when
    given a value no parser takes. An operation's ``omitted_defaults`` (parameters its
    canonical params leave out at their default, to keep older outputs' keys) are listed too.
    """
    rows = []
    defaults = {**op.canonical_params(op.parse_params({})), **getattr(op, "omitted_defaults", {})}
    for name, default in defaults.items():
        try:
            op.parse_params({name: "\x00"})
            accepts = ""
        except InvalidParameters as exc:
            accepts = exc.message.partition("expected ")[2]
        rows.append({"name": name, "default": default, "accepts": accepts})
    return rows


def get_operation(name: str) -> Operation:
    """Return the operation called ``name`` or raise a typed pipeline error."""
    op = _AVAILABLE.get(name)
    if op is not None:
        return op
    if name in _PLANNED:
        raise OperationUnavailable(f"operation {name!r} is not available in this version of darkroom")
    raise UnknownOperation(f"unknown operation {name!r}; known operations: {', '.join(KNOWN_OPERATIONS)}")
