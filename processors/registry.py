"""Operation lookup by name.

``enhance`` and ``upscale`` are part of the product's contract but not built yet: they
are known names that fail with ``operation_unavailable`` instead of pretending to work.
"""

from __future__ import annotations

from processors.errors import OperationUnavailable, UnknownOperation
from processors.operation import Operation
from processors.thumbnail import THUMBNAIL

_AVAILABLE: dict[str, Operation] = {THUMBNAIL.name: THUMBNAIL}
_PLANNED = frozenset({"enhance", "upscale"})
KNOWN_OPERATIONS = tuple(sorted(set(_AVAILABLE) | _PLANNED))
AVAILABLE_OPERATIONS = tuple(sorted(_AVAILABLE))


def get_operation(name: str) -> Operation:
    """Return the operation called ``name`` or raise a typed pipeline error."""
    op = _AVAILABLE.get(name)
    if op is not None:
        return op
    if name in _PLANNED:
        raise OperationUnavailable(f"operation {name!r} is not available in this version of darkroom")
    raise UnknownOperation(f"unknown operation {name!r}; known operations: {', '.join(KNOWN_OPERATIONS)}")
