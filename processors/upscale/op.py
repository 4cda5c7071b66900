"""The ``upscale`` operation: open → plan → decode → orient → colour → model → upscale → encode.

Each step is a small function over one ``_Context``; nothing about an image outlives
its run. The learned part (tiling, backends, fallbacks) is in ``engine``; this module
parses the request, checks the output fits the worker's memory before any pixel is
decoded, and encodes the result. ``engine`` (and with it torch) is imported by the
steps that need it, on the first image, so that parsing a pipeline spec stays cheap.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
from PIL import Image

from processors import params, quality
from processors.errors import TooManyPixels
from processors.image import (
    OutputFormat,
    display_size,
    format_for,
    format_name,
    load,
    open_image,
    orient,
    to_srgb,
)
from processors.operation import Limits, Rendition, StepResult
from processors.upscale.config import (
    DEFAULT_MODEL,
    MODEL_NAMES,
    NET_SCALE,
    PRE_PAD,
    AlphaMode,
    Precision,
    UpscaleConfig,
)

if TYPE_CHECKING:
    from processors.upscale.engine import Upscaled

MIN_SCALE, MAX_SCALE = 1.0, 8.0
MIN_TILE, MAX_TILE = 32, 4096
Fallback = Literal["auto", "allow", "forbid"]


@dataclass(frozen=True, kw_only=True)
class UpscaleParams:
    """Parsed ``upscale`` parameters; see ``Upscale.parse_params`` for their spelling.

    ``scale`` is the output size over the input size (the reference's ``outscale``): the
    4× network runs, then Lanczos brings its output to exactly ``int(side × scale)``.
    ``model="auto"`` picks by image size and the worker's speed budget. ``tile=None``
    sizes tiles from free memory; ``0`` runs untiled. ``fallback="auto"`` follows the
    worker's configuration.
    """

    scale: float = 4.0
    model: str = DEFAULT_MODEL
    precision: Precision = "auto"
    fallback: Fallback = "auto"
    tile: int | None = None
    alpha: AlphaMode = "model"
    format: OutputFormat | None = None  # auto: PNG when the image has transparency, else JPEG
    quality: quality.Quality = 90


def _scale(value: str) -> float:
    """A short decimal in ``[MIN_SCALE, MAX_SCALE]`` (``params.number`` allows a sign; a scale has none)."""
    expected = f"a number {MIN_SCALE:g}..{MAX_SCALE:g} with up to 3 decimals"
    if value[:1] in "+-":
        raise ValueError(expected)
    return params.number(value, MIN_SCALE, MAX_SCALE, expected)


def _choice(*options: str) -> params.Parser:
    def parse(value: str) -> str:
        if value not in options:
            raise ValueError(" or ".join(options))
        return value

    return parse


def _tile(value: str) -> int | None:
    if value == "auto":
        return None
    if re.fullmatch(r"[0-9]{1,4}", value, re.ASCII) and (value == "0" or MIN_TILE <= int(value) <= MAX_TILE):
        return int(value)
    raise ValueError(f"auto, 0 (untiled) or {MIN_TILE}..{MAX_TILE} pixels")


_PARSERS: Mapping[str, params.Parser] = {
    "alpha": _choice("model", "linear"),
    "fallback": _choice("auto", "allow", "forbid"),
    "format": params.output_format,
    "model": _choice(*MODEL_NAMES, "auto"),
    "precision": _choice("auto", "exact"),
    "quality": params.quality,
    "quality_target": params.quality_target,
    "scale": _scale,
    "tile": _tile,
}


def output_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """The reference's output size, ``int(side × outscale)``, never below one pixel."""
    return max(1, int(width * scale)), max(1, int(height * scale))


@dataclass
class _Context:
    """What the steps of one run share; made per input and never reused.

    ``image`` is the opened file, then its decoded first frame, upright, then in sRGB
    working mode (``L``, ``RGB`` or ``RGBA``). ``size`` is the output (width, height),
    planned from the header. ``model`` is the concrete model once ``auto`` is resolved.
    """

    data: bytes
    params: UpscaleParams
    limits: Limits
    config: UpscaleConfig
    image: Image.Image = field(init=False)
    size: tuple[int, int] = field(init=False)
    model: str = field(init=False)
    details: dict[str, str] = field(default_factory=dict)
    result: Upscaled = field(init=False)
    rendition: Rendition = field(init=False)


def _open(ctx: _Context) -> None:
    ctx.image = open_image(ctx.data, ctx.limits)


def _plan(ctx: _Context) -> None:
    """Refuse, before decoding, an output whose pixel buffers alone would break the budget."""
    width, height = display_size(ctx.image)
    ctx.size = output_size(width, height, ctx.params.scale)
    network_px = (width + PRE_PAD) * (height + PRE_PAD) * NET_SCALE * NET_SCALE
    largest = max(network_px, ctx.size[0] * ctx.size[1])
    if largest > ctx.config.max_output_pixels:
        raise TooManyPixels(
            f"upscaling {width}x{height} by {ctx.params.scale:g} needs a {largest}-pixel image; "
            f"this worker's limit is {ctx.config.max_output_pixels}"
        )


def _decode(ctx: _Context) -> None:
    ctx.image = load(ctx.image)


def _orient(ctx: _Context) -> None:
    ctx.image = orient(ctx.image)


def _colour(ctx: _Context) -> None:
    ctx.image = to_srgb(ctx.image)


def _model(ctx: _Context) -> None:
    if ctx.params.model != "auto":
        ctx.model = ctx.params.model
        return
    from processors.upscale import engine

    pixels = ctx.image.width * ctx.image.height
    ctx.model, reason = engine.choose_model(
        pixels, ctx.config.speed_budget_s, engine.speed_class(ctx.config, ctx.params.precision)
    )
    ctx.details["model_choice"] = reason


def _fallback_allowed(config: UpscaleConfig, params: UpscaleParams) -> bool:
    return config.allow_fallback if params.fallback == "auto" else params.fallback == "allow"


def _upscale(ctx: _Context) -> None:
    from processors.upscale import engine

    p, img = ctx.params, ctx.image
    alpha = np.asarray(img.getchannel("A")) if img.mode == "RGBA" else None
    colour = np.asarray(img.convert("RGB") if img.mode == "RGBA" else img)
    job = engine.Job(
        colour=colour,
        alpha=alpha,
        alpha_mode=p.alpha,
        size=ctx.size,
        model=ctx.model,
        precision=p.precision,
        tile=p.tile,
        fallback=_fallback_allowed(ctx.config, p),
    )
    ctx.result = engine.upscale(ctx.config, job)


def _encode(ctx: _Context) -> None:
    p, image = ctx.params, ctx.result.image
    fmt = format_for(p.format, image)
    encoded = quality.encode_at(image, fmt, p.quality)
    ctx.details.update(quality.details([encoded]))
    ctx.rendition = Rendition(
        name="upscaled",
        data=encoded.data,
        width=image.width,
        height=image.height,
        content_type=fmt.content_type,
        extension=fmt.extension,
    )


_STEPS: tuple[Callable[[_Context], None], ...] = (
    _open,
    _plan,
    _decode,
    _orient,
    _colour,
    _model,
    _upscale,
    _encode,
)


class Upscale:
    """The ``upscale`` operation (see ``processors.operation.Operation``).

    One instance per worker configuration; it holds no per-image state, so threads may
    share it.
    """

    name = "upscale"
    version = "3"
    """Part of every output key: 3 since the fused CPU forward was removed (bf16 bytes differ)."""
    max_batch = 1
    omitted_defaults = quality.OMITTED_DEFAULTS
    """Named in canonical params only with ``quality=auto``."""

    def __init__(self, config: UpscaleConfig) -> None:
        self.config = config

    def parse_params(self, raw: Mapping[str, str]) -> UpscaleParams:
        """Parse ``scale`` (1..8, e.g. ``2`` or ``1.5``), ``model`` (a model name or
        ``auto``), ``precision`` (``auto``/``exact``), ``fallback`` (``auto``/``allow``/
        ``forbid``), ``tile`` (``auto``, ``0`` or 32..4096), ``alpha`` (``model``/
        ``linear``), ``format``, ``quality`` (1..100 or ``auto``) and ``quality_target``."""
        return UpscaleParams(**params.parse_fields("upscale", raw, _PARSERS))

    def canonical_params(self, params: UpscaleParams) -> dict[str, str]:
        """Every parameter, defaults included, in one spelling (``4.0`` → ``4``, ``jpg`` → ``jpeg``)."""
        return {
            "alpha": params.alpha,
            "fallback": params.fallback,
            "format": format_name(params.format),
            "model": params.model,
            "precision": params.precision,
            **quality.canonical(params.quality),
            "scale": f"{params.scale:g}",
            "tile": "auto" if params.tile is None else str(params.tile),
        }

    def plan(self, data: bytes, params: UpscaleParams, limits: Limits) -> dict[str, str]:
        """The model (``auto`` resolved from the header's size), backend and weights this
        worker would use now: after ``models fetch``, torch instead of a fallback."""
        from processors.upscale import engine

        model = params.model
        if model == "auto":
            width, height = display_size(open_image(data, limits))
            speed = engine.speed_class(self.config, params.precision)
            model, _ = engine.choose_model(width * height, self.config.speed_budget_s, speed)
        return engine.planned_identity(
            self.config, model, params.precision, fallback=_fallback_allowed(self.config, params)
        )

    def run(self, data: bytes, params: UpscaleParams, limits: Limits) -> StepResult:
        """One rendition, ``upscaled``, of exactly ``int(side × scale)`` pixels."""
        from processors.upscale import engine

        ctx = _Context(data=data, params=params, limits=limits, config=self.config)
        for step in _STEPS:
            step(ctx)
        result = ctx.result
        details = {"model": ctx.model, "scale": f"{params.scale:g}", **ctx.details, **result.details}
        if result.image.mode in ("RGBA", "LA"):
            details["alpha"] = params.alpha if result.backend != "lanczos" else "linear"
        model = "none" if result.backend == "lanczos" else ctx.model
        identity = engine.pixel_identity(model, result.backend, result.details.get("model_sha256", ""))
        return StepResult(renditions=[ctx.rendition], backend=result.backend, details=details, identity=identity)
