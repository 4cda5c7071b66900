"""What every operation looks like from the outside: params in, renditions out.

An operation is pure image work: it receives the input bytes, its parsed parameters and
the limits, and returns encoded renditions. It never touches Kafka or object storage;
``streams`` does that and calls operations through this interface.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_PIXELS = 100_000_000
DEFAULT_MAX_FRAMES = 500


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Input limits checked before any pixel is decoded (decompression-bomb defence).

    ``max_pixels`` is width × height of the largest frame; ``max_frames`` bounds animated
    inputs even though only the first frame is used.
    """

    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_frames: int = DEFAULT_MAX_FRAMES


@dataclass(frozen=True, kw_only=True)
class Rendition:
    """One encoded output of an operation.

    ``name`` is unique within one step's outputs and stable for the same params (it is
    part of the output's object key); ``extension`` has no dot.
    """

    name: str
    data: bytes
    width: int
    height: int
    content_type: str
    extension: str


@dataclass(frozen=True, kw_only=True)
class StepResult:
    """What one run of an operation produced, and how.

    ``backend`` names what actually made the pixels (``pillow``, ``torch-cpu-bf16``,
    ``ncnn``, ``lanczos``…), after any fallback. ``details`` says what the operation did
    (an upscale's model and tiling, an enhance's corrections and amounts) so a user can
    audit or reproduce it; both end up in the completion event.
    """

    renditions: list[Rendition]
    backend: str
    details: Mapping[str, str] = field(default_factory=dict)
    identity: Mapping[str, str] = field(default_factory=dict)
    """What made these bytes besides the input and the params: the resolved model, its
    weights' sha256, backend and precision (empty for operations whose bytes depend on
    nothing else). Part of the output keys, so a fallback or another precision never
    writes under the key of other bytes."""


class Operation(Protocol):
    """An image operation that ``streams`` can run as a pipeline step.

    ``version`` changes whenever the bytes an operation produces for the same input and
    params would change (code or model change); it is part of the output keys, so a
    replay after an upgrade writes new objects instead of overwriting old ones.
    """

    name: str
    version: str
    max_batch: int
    """Most records a worker of this operation handles per commit: 1 for operations that
    take seconds or minutes per image, so a crash repeats at most one image's work."""

    def parse_params(self, raw: Mapping[str, str]) -> Any:
        """Validate raw ``key=value`` params into a frozen params object.

        Unknown keys and bad values raise ``InvalidParameters``.
        """
        ...

    def canonical_params(self, params: Any) -> Mapping[str, str]:
        """Params with defaults filled in, as strings: the identity of a step's output."""
        ...

    def plan(self, data: bytes, params: Any, limits: Limits) -> Mapping[str, str]:
        """The ``identity`` that ``run`` will report unless something falls back while it
        runs; cheap (no pixels decoded), so a redelivery finds finished outputs first."""
        ...

    def run(self, data: bytes, params: Any, limits: Limits) -> StepResult:
        """Process one input; the first rendition feeds the next pipeline step."""
        ...
