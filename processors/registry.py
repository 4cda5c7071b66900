"""Operation lookup by name.

``_PLANNED`` holds names that are part of the product's contract but not built yet (none
at present): they fail with ``operation_unavailable`` instead of pretending to work.
"""

from __future__ import annotations

from processors.enhance import ENHANCE
from processors.errors import OperationUnavailable, UnknownOperation
from processors.operation import Operation
from processors.thumbnail import THUMBNAIL
from processors.upscale import UPSCALE

_AVAILABLE: dict[str, Operation] = {ENHANCE.name: ENHANCE, THUMBNAIL.name: THUMBNAIL, UPSCALE.name: UPSCALE}
_PLANNED: frozenset[str] = frozenset()
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
