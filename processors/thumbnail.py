"""thumbnail: one downscaled rendition of an image per requested size.

The recipe is ``_STEPS``: open → plan → decode (JPEG draft) → orient → metadata →
colour → focus → render. Every step is a small function over one ``_Context``, so each can be
read, tested and timed on its own and nothing about an image outlives its run.

Sizes are planned on the full-resolution, upright source before anything is decoded,
so output dimensions never depend on how far the JPEG draft shrank the decode (which
itself depends on the other sizes asked for). Cover crops sit where ``gravity`` says
(``processors.focus``): compass points are planned with the sizes; ``auto``, ``face`` and
``attention`` look at a reduced copy of the decoded image in the focus step and move
each crop window onto what they found.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from PIL import Image

from processors import focus, params, quality
from processors.focus import DEFAULT_GRAVITY, Detection, Gravity
from processors.image import (
    OutputFormat,
    display_size,
    format_for,
    format_name,
    load,
    open_image,
    orient,
    output_exif,
    to_srgb,
)
from processors.operation import Limits, Rendition, StepResult

MAX_SIDE = 16384
MAX_SIZES = 16
REDUCING_GAP = 2.0
"""Shrink by integer steps until within 2× of the target, then Lanczos (Pillow's thumbnail)."""

Fit = Literal["contain", "cover"]


@dataclass(frozen=True)
class Box:
    """A requested size; ``N`` in a spec is the square box ``N``×``N`` (longest side N)."""

    width: int
    height: int

    @property
    def label(self) -> str:
        """The normal spelling: ``256`` for a square box, ``400x300`` otherwise."""
        return str(self.width) if self.width == self.height else f"{self.width}x{self.height}"


@dataclass(frozen=True, kw_only=True)
class ThumbnailParams:
    """Parsed ``thumbnail`` parameters; see ``parse_params`` for the spelling of each.

    ``contain`` fits the whole image inside each box; ``cover`` fills the box and
    crops where ``gravity`` says (the centre by default; only cover crops, so ``contain``
    parses any gravity to the default). Without ``upscale`` no output is larger than the source: ``contain``
    keeps the source size, ``cover`` shrinks the box, keeping its aspect ratio, until
    the source fills it. ``background`` only shows where JPEG flattens transparency.
    """

    sizes: tuple[Box, ...] = (Box(256, 256),)
    fit: Fit = "contain"
    gravity: Gravity = DEFAULT_GRAVITY
    format: OutputFormat | None = None
    """None: ``auto`` (PNG for images with transparency, else JPEG), one format for every size."""
    quality: quality.Quality = 82
    """Or ``quality=auto`` (``processors.quality``): chosen per size."""
    strip: bool = True
    upscale: bool = False
    background: tuple[int, int, int] = (255, 255, 255)


_SIZE = re.compile(r"([0-9]{1,5})(?:x([0-9]{1,5}))?", re.ASCII)
_HEX_COLOUR = re.compile(r"[0-9a-fA-F]{6}", re.ASCII)


def _parse_sizes(value: str) -> tuple[Box, ...]:
    expected = f"up to {MAX_SIZES} distinct sizes N or WxH joined by '+', each side 1..{MAX_SIDE} pixels"
    boxes: list[Box] = []
    for item in value.split("+"):
        match = _SIZE.fullmatch(item)
        if match is None:
            raise ValueError(expected)
        width = int(match[1])
        height = int(match[2]) if match[2] is not None else width
        box = Box(width, height)
        if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE) or box in boxes:
            raise ValueError(expected)
        boxes.append(box)
    if len(boxes) > MAX_SIZES:
        raise ValueError(expected)
    return tuple(boxes)


_FITS: Mapping[str, Fit] = {"contain": "contain", "cover": "cover"}


def _parse_fit(value: str) -> Fit:
    fit = _FITS.get(value)
    if fit is None:
        raise ValueError("contain or cover")
    return fit


def _parse_colour(value: str) -> tuple[int, int, int]:
    if not _HEX_COLOUR.fullmatch(value):
        raise ValueError("six hex digits such as ffffff")
    rgb = bytes.fromhex(value)
    return (rgb[0], rgb[1], rgb[2])


_PARSERS: Mapping[str, params.Parser] = {
    "background": _parse_colour,
    "fit": _parse_fit,
    "format": params.output_format,
    "gravity": focus.parse_gravity,
    "quality": params.quality,
    "quality_target": params.quality_target,
    "sizes": _parse_sizes,
    "strip": params.boolean,
    "upscale": params.boolean,
}


@dataclass(frozen=True)
class _Plan:
    """One output: its size and the region of the full-resolution upright source it shows.

    ``region`` is ``(left, top, right, bottom)`` in source pixels, fractional for cover
    crops; the whole source for ``contain``.
    """

    size: tuple[int, int]
    region: tuple[float, float, float, float]

    @property
    def scale(self) -> float:
        """Output pixels per source pixel (the larger of the two axes after rounding)."""
        left, top, right, bottom = self.region
        return max(self.size[0] / (right - left), self.size[1] / (bottom - top))


def _plan(source: tuple[int, int], box: Box, fit: Fit, upscale: bool, gravity: Gravity) -> _Plan:
    src_w, src_h = source
    if fit == "contain":
        scale = min(box.width / src_w, box.height / src_h)
        if not upscale:
            scale = min(scale, 1.0)
        size = (max(1, round(src_w * scale)), max(1, round(src_h * scale)))
        return _Plan(size, (0.0, 0.0, float(src_w), float(src_h)))
    shrink = 1.0 if upscale else min(1.0, src_w / box.width, src_h / box.height)
    out_w, out_h = max(1, round(box.width * shrink)), max(1, round(box.height * shrink))
    scale = max(out_w / src_w, out_h / src_h)
    return _Plan((out_w, out_h), focus.place(source, (out_w / scale, out_h / scale), gravity, None))


@dataclass
class _Context:
    """What the steps of one run share. Made per input and never reused.

    ``image`` is, in turn: the opened (not decoded) file, its first frame decoded
    (possibly at 1/2–1/8 scale), upright, then in sRGB working mode. ``source_size`` is
    the full-resolution size in display orientation, the frame ``plans`` are drawn in,
    whatever the decoded size. ``exif`` is what the outputs carry: empty when stripping.
    """

    data: bytes
    params: ThumbnailParams
    limits: Limits
    image: Image.Image = field(init=False)
    source_size: tuple[int, int] = field(init=False)
    plans: list[_Plan] = field(init=False)
    exif: bytes = b""
    details: dict[str, str] = field(default_factory=dict)
    renditions: list[Rendition] = field(default_factory=list)


def _open(ctx: _Context) -> None:
    ctx.image = open_image(ctx.data, ctx.limits)
    ctx.source_size = display_size(ctx.image)


def _plan_sizes(ctx: _Context) -> None:
    p = ctx.params
    ctx.plans = [_plan(ctx.source_size, box, p.fit, p.upscale, p.gravity) for box in p.sizes]


def _decode(ctx: _Context) -> None:
    """Decode JPEGs at the smallest DCT scale that still covers the largest output.

    Like libvips' shrink-on-load: libjpeg's 1/2–1/8 scaling averages whole blocks, so it
    loses no detail the output could show, and the final Lanczos pass sets the quality.
    """
    factor = min(1.0, max(plan.scale for plan in ctx.plans))
    width, height = ctx.image.size  # stored orientation, which is what the draft sees
    ctx.image = load(ctx.image, draft_size=(math.ceil(width * factor), math.ceil(height * factor)))


def _orient(ctx: _Context) -> None:
    ctx.image = orient(ctx.image)


def _metadata(ctx: _Context) -> None:
    if ctx.params.strip:
        return
    ctx.exif = output_exif(ctx.image)


def _colour(ctx: _Context) -> None:
    ctx.image = to_srgb(ctx.image)


def _focus(ctx: _Context) -> None:
    """Move each cover crop onto the faces or the salient region (``auto``, ``face``,
    ``attention``) and report what they were centred on: ``focus`` (``face``,
    ``attention``, ``centre``), ``faces`` found, ``focus_box`` (``x,y,w,h`` in source
    pixels; ``+``-joined in the order of the sizes when the faces that fit differ)."""
    p = ctx.params
    if p.fit != "cover":
        return
    ctx.details["gravity"] = p.gravity
    if not focus.detects(p.gravity):
        return
    cropping = [i for i, plan in enumerate(ctx.plans) if _crops(plan, ctx.source_size)]
    if not cropping:  # every box has the source's aspect ratio: nothing to place
        ctx.details["focus"] = "none"
        return
    found: Detection = focus.detect(ctx.image, ctx.source_size, p.gravity)
    if p.gravity in ("auto", "face") and not found.face_detector:
        ctx.details["face_detector"] = "unavailable"
    boxes: list[str] = []
    for i in cropping:
        left, top, right, bottom = ctx.plans[i].region
        crop = (right - left, bottom - top)
        where = found.focus(p.gravity, crop)
        ctx.plans[i] = _Plan(ctx.plans[i].size, focus.place(ctx.source_size, crop, p.gravity, where))
        reported = where.details()
        boxes.append(reported.pop("focus_box", ""))
        ctx.details.update(reported)
    if any(boxes):
        ctx.details["focus_box"] = boxes[0] if len(set(boxes)) == 1 else "+".join(boxes)


def _crops(plan: _Plan, source: tuple[int, int]) -> bool:
    left, top, right, bottom = plan.region
    return right - left < source[0] - 0.5 or bottom - top < source[1] - 0.5


def _render(ctx: _Context) -> None:
    """Resize and encode each size from the same decoded image, in the order asked; with
    ``quality=auto`` the details say each size's ``quality`` and ``ssimulacra2``."""
    p = ctx.params
    img = ctx.image
    to_decoded_x = img.width / ctx.source_size[0]
    to_decoded_y = img.height / ctx.source_size[1]
    fmt = format_for(p.format, img)
    encoded: list[quality.Encoded] = []
    for box, plan in zip(p.sizes, ctx.plans, strict=True):
        left, top, right, bottom = plan.region
        region = (left * to_decoded_x, top * to_decoded_y, right * to_decoded_x, bottom * to_decoded_y)
        resized = img.resize(plan.size, Image.Resampling.LANCZOS, box=region, reducing_gap=REDUCING_GAP)
        encoded.append(quality.encode_at(resized, fmt, p.quality, background=p.background, exif=ctx.exif))
        ctx.renditions.append(
            Rendition(
                name=f"thumb-{box.label}" + ("-cover" if p.fit == "cover" else ""),
                data=encoded[-1].data,
                width=resized.width,
                height=resized.height,
                content_type=fmt.content_type,
                extension=fmt.extension,
            )
        )
    ctx.details.update(quality.details(encoded))


_STEPS: tuple[Callable[[_Context], None], ...] = (
    _open,
    _plan_sizes,
    _decode,
    _orient,
    _metadata,
    _colour,
    _focus,
    _render,
)


class Thumbnail:
    """The ``thumbnail`` operation (see ``processors.operation.Operation``)."""

    name = "thumbnail"
    version = "2"
    max_batch = 32

    def parse_params(self, raw: Mapping[str, str]) -> ThumbnailParams:
        """Parse ``sizes`` (``256+400x300``), ``fit``, ``gravity`` (``processors.focus``),
        ``format``, ``quality`` (1..100 or ``auto``), ``quality_target`` (with auto), ``strip``
        and ``upscale`` (``true``/``false``) and ``background`` (``ffffff``)."""
        values = params.parse_fields("thumbnail", raw, _PARSERS)
        if values.get("fit", "contain") == "contain":
            values.pop("gravity", None)  # nothing is cropped: any gravity makes the same bytes
        return ThumbnailParams(**values)

    omitted_defaults: ClassVar[Mapping[str, str]] = {"gravity": DEFAULT_GRAVITY, **quality.OMITTED_DEFAULTS}
    """Parameters ``canonical_params`` leaves out at their default, so that outputs made
    before the parameter existed keep their keys (``registry.describe`` lists them)."""

    def canonical_params(self, params: ThumbnailParams) -> dict[str, str]:
        """Every parameter, defaults included, in one spelling (``jpg`` → ``jpeg``, ``256x256`` → ``256``),
        but ``gravity`` only when it is not the default and ``quality_target`` only with
        ``quality=auto`` (see ``omitted_defaults``)."""
        gravity = {} if params.gravity == DEFAULT_GRAVITY else {"gravity": params.gravity}
        return {
            "background": bytes(params.background).hex(),
            "fit": params.fit,
            "format": format_name(params.format),
            **gravity,
            **quality.canonical(params.quality),
            "sizes": "+".join(box.label for box in params.sizes),
            "strip": str(params.strip).lower(),
            "upscale": str(params.upscale).lower(),
        }

    def plan(self, data: bytes, params: ThumbnailParams, limits: Limits) -> dict[str, str]:
        """Nothing but the input and the params decides the bytes, except the face
        detector when a cover crop looks for faces (another OpenCV may find other faces)."""
        if params.fit == "cover" and params.gravity in ("auto", "face"):
            return {"face_detector": focus.face_detector()}
        return {}

    def run(self, data: bytes, params: ThumbnailParams, limits: Limits) -> StepResult:
        """One rendition per size, in the order of ``params.sizes``."""
        ctx = _Context(data=data, params=params, limits=limits)
        for step in _STEPS:
            step(ctx)
        return StepResult(renditions=ctx.renditions, backend="pillow", details=ctx.details)


THUMBNAIL = Thumbnail()
