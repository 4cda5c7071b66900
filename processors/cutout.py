"""cutout: a product photographed on a plain background becomes a transparent image.

The recipe is ``_STEPS``: decode → orient → metadata → colour → reduce → model the
background → seed → segment → judge → refine → compose → encode. Every step is a small
function over one ``_Context``; nothing about an image outlives its run, and the same
input and params always give the same bytes (GrabCut's k-means is seeded).

No learned model: a studio background is one smooth colour field (white, an off-white
gradient, grey, coloured paper), so it is modelled from the image border by a quadratic
surface in CIELAB, fitted robustly (border pixels far from it are the subject touching
the frame, or a busy background). Each pixel's distance from that surface, with
darkening discounted (a soft shadow is background made darker, not a new colour), seeds
OpenCV's GrabCut on a reduced copy (``WORK_SIDE``): the border is certain background,
far pixels probable foreground, the rest probable background. GrabCut's colour models
and edge term then settle the outline at the reduced size.

Only the edge is worked at full resolution: in a band a few reduced pixels wide around
the outline, the background ``B`` and the subject's colour ``F`` are known locally
(normalised convolutions of the certain pixels on either side), so each pixel's alpha is
the projection of ``I - B`` on ``F - B`` (a two-colour blend), and its colour is what it
would be without the background, ``B + (I - B) / alpha`` (decontamination: no halo of the
old background). Pixels that fit no such blend, or edges with too little contrast, keep
the reduced mask. Transparent pixels within ``SPREAD_PX`` of the subject carry its colours
spread outwards, so a later resampling (upscale's, which does not premultiply alpha) draws
no dark or background-coloured fringe; farther out they are one colour, which keeps the
PNG encode fast. A part of the subject the colour of the background is still shut off
from the border by its sharp outline: what strong edges enclose is subject.

It says when it should not be trusted: ``confidence`` (0..1) is the weakest of seven
checks — how much of the border is one colour field, how tight that field is, the
contrast along the outline, whether GrabCut agreed with the colour seeds, whether a
subject of sensible size was found, whether long edges run outside the outline (a part
cut off), and how much of the subject was found by enclosing edges alone. Below ``MIN_CONFIDENCE``, ``strict=true`` (the
default) fails with ``background_not_plain``; ``strict=false`` completes and reports
``trusted=false`` with the confidence and the reason in the details.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

# cv2 is imported in the functions that use it: importing the registry (every worker,
# the upscale path among them) must not load OpenCV (tests/processors/upscale/test_op.py)
from processors import params, quality
from processors.errors import BackgroundNotPlain, InvalidParameters, ProcessingFailed
from processors.image import (
    PNG,
    OutputFormat,
    decode,
    flatten,
    format_for,
    format_name,
    orient,
    output_exif,
    to_srgb,
)
from processors.operation import Limits, Rendition, StepResult

WORK_SIDE = 320
"""Longest side of the reduced copy that is segmented (GrabCut's cost grows fast with size)."""
BORDER = 0.02
"""Width of the border ring the background is modelled from, as a share of the reduced side."""
INLIER_DE = 7.0
"""CIELAB ΔE from the fitted background within which a border pixel belongs to it."""
SHADOW_WEIGHT = 0.4
"""How much a darkening counts against a lightening of the same size: shadows are background."""
SEED_DE = 10.0
"""Smallest distance from the background (ΔE, darkening discounted) that seeds probable foreground."""
LIKE_DE = 4.0
"""Chroma and lightening (ΔE) within which a pixel is explained by the background field."""
SHADOW_DL = 25.0
"""Darkening (L*) up to which a pixel of the background's colour is a soft shadow on it."""
SURE_FACTOR = 3.0
"""Seeds this many times farther than ``SEED_DE`` (and not at the seeds' edge) are certain foreground."""
GRABCUT_ITERATIONS = 3
BAND = 2
"""Reduced pixels on each side of the outline that are matted at full resolution."""
MIN_EDGE_CONTRAST = 24.0
"""Smallest ``|F - B|`` (8-bit RGB) at which the two-colour blend is trusted over the reduced mask."""
MAX_BLEND_RESIDUAL = 28.0
"""Largest distance (8-bit RGB) of a pixel from its two-colour blend for its alpha to be taken."""
HOLE_SHARE = 0.5
"""An enclosed region at least this much explained by the background (a handle's gap) stays
transparent; less, it is part of the subject (a white label on a white box)."""
ALPHA_SNAP = 0.05
"""Alphas this close to 0 or 1 are noise around a blend (JPEG ringing, sensor noise): snapped."""
EDGE_DE = 3.0
"""Smallest colour gradient (ΔE per reduced pixel, and 3× the border's own) that is an edge:
shading, soft shadows and noise stay below it, an object's outline does not."""
STRAY_SHARE = 0.02
"""Long edges off the outline, as a share of its length, at which the cut is no longer trusted:
part of the subject (a pale part the colour of the background) may have been cut off."""
STRAY_LENGTH = 6
"""Edges shorter than this (reduced pixels) off the outline are specks on the backdrop, not an outline."""
ENCLOSED_SHARE = 0.45
"""Share of the subject found only because edges enclose it, at which the cut is no longer trusted."""
MIN_CONFIDENCE = 0.5
MAX_PADDING = 100
SPREAD_PX = 16
PNG_LEVEL = 2
"""zlib level of a transparent PNG output (see ``_transparent_png``)."""
"""How far (full-size pixels) past the visible subject transparent pixels carry its colours."""


@dataclass(frozen=True, kw_only=True)
class CutoutParams:
    """Parsed ``cutout`` parameters; see ``Cutout.parse_params`` for their spelling.

    ``background`` None keeps the background transparent; a colour composites the subject
    onto it (opaque output). ``padding`` is a percentage of the subject's longer side,
    added on every side when ``trim`` crops to the subject.
    """

    background: tuple[int, int, int] | None = None
    trim: bool = False
    padding: int = 0
    strict: bool = True
    format: OutputFormat | None = None
    """None: ``auto``, PNG while the output has transparency (JPEG onto a ``background``)."""
    quality: quality.Quality = 90
    strip: bool = True


_HEX_COLOUR = re.compile(r"[0-9a-fA-F]{6}", re.ASCII)


def _parse_background(value: str) -> tuple[int, int, int] | None:
    if value == "none":
        return None
    if not _HEX_COLOUR.fullmatch(value):
        raise ValueError("none (transparent) or six hex digits such as ffffff")
    rgb = bytes.fromhex(value)
    return (rgb[0], rgb[1], rgb[2])


def _parse_padding(value: str) -> int:
    if not re.fullmatch(r"[0-9]{1,3}", value, re.ASCII) or int(value) > MAX_PADDING:
        raise ValueError(f"an integer 0..{MAX_PADDING} (percent of the subject's longer side)")
    return int(value)


_PARSERS: Mapping[str, params.Parser] = {
    "background": _parse_background,
    "format": params.output_format,
    "padding": _parse_padding,
    "quality": params.quality,
    "quality_target": params.quality_target,
    "strict": params.boolean,
    "strip": params.boolean,
    "trim": params.boolean,
}


# --- the background model -----------------------------------------------------------


def _lab(rgb: np.ndarray) -> np.ndarray:
    """8-bit sRGB (H×W×3) → CIELAB float32 (L 0..100)."""
    import cv2

    return cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)


def _design(xs: np.ndarray, ys: np.ndarray, width: int, height: int) -> np.ndarray:
    """Quadratic surface terms at pixel centres, coordinates scaled to -1..1."""
    x = (xs + 0.5) / width * 2.0 - 1.0
    y = (ys + 0.5) / height * 2.0 - 1.0
    return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=1)


@dataclass(frozen=True)
class _Background:
    """The background field fitted to the border of the reduced copy.

    ``lab`` is the field at every reduced pixel; ``ring`` marks the border ring and
    ``inliers`` its pixels within ``INLIER_DE`` of the field; ``inlier_share`` is their
    share of the ring, ``spread`` the 90th percentile of their ΔE (how tight the field is);
    ``colour`` the median inlier colour (8-bit sRGB).
    """

    lab: np.ndarray
    ring: np.ndarray
    inliers: np.ndarray
    inlier_share: float
    spread: float
    colour: tuple[int, int, int]


def _fit_background(rgb: np.ndarray, lab: np.ndarray) -> _Background:
    """Least squares, three times, each time on the ring pixels the last fit explains."""
    height, width = lab.shape[:2]
    ring = np.zeros((height, width), bool)
    b = max(2, round(BORDER * max(width, height)))
    ring[:b], ring[-b:], ring[:, :b], ring[:, -b:] = True, True, True, True
    ys, xs = np.nonzero(ring)
    design = _design(xs.astype(np.float32), ys.astype(np.float32), width, height)
    values = lab[ys, xs]
    keep = np.ones(len(ys), bool)
    coef = np.zeros((design.shape[1], 3), np.float32)
    for limit in (4 * INLIER_DE, 2 * INLIER_DE, INLIER_DE):
        if keep.sum() < design.shape[1] * 4:
            break
        coef = np.linalg.lstsq(design[keep], values[keep], rcond=None)[0]
        residual = np.linalg.norm(values - design @ coef, axis=1)
        if np.count_nonzero(residual < limit) < keep.sum() * 0.5 and limit < 4 * INLIER_DE:
            break  # the fit is chasing a busy border: keep the last one
        keep = residual < limit
    residual = np.linalg.norm(values - design @ coef, axis=1)
    keep = residual < INLIER_DE
    grid_y, grid_x = np.mgrid[0:height, 0:width].astype(np.float32)
    field_lab = (_design(grid_x.ravel(), grid_y.ravel(), width, height) @ coef).reshape(height, width, 3)
    inliers = np.zeros((height, width), bool)
    inliers[ys[keep], xs[keep]] = True
    colour = np.median(rgb[ys[keep], xs[keep]], axis=0) if keep.any() else np.median(rgb[ys, xs], axis=0)
    return _Background(
        lab=field_lab.astype(np.float32),
        ring=ring,
        inliers=inliers,
        inlier_share=float(keep.mean()),
        spread=float(np.percentile(residual[keep], 90)) if keep.any() else math.inf,
        colour=(int(colour[0]), int(colour[1]), int(colour[2])),
    )


def _to_linear(v: np.ndarray) -> np.ndarray:
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)


def _differences(rgb: np.ndarray, lab: np.ndarray, field_lab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel against the background field: (chroma ΔE, lightness difference).

    The chroma is compared with the field *darkened to the pixel's luminance* (in linear
    light), so a shadow, which darkens without changing the colour of the light, differs
    in lightness only, on white and coloured paper alike.
    """
    import cv2

    field_rgb = np.clip(cv2.cvtColor(field_lab, cv2.COLOR_Lab2RGB), 0.0, 1.0)
    lin_field = _to_linear(field_rgb)
    lin_pixel = _to_linear(rgb.astype(np.float32) / 255.0)
    ratio = np.clip((lin_pixel @ _LUMA) / np.maximum(lin_field @ _LUMA, 1e-4), 0.0, 1.0)
    shaded = np.clip(lin_field * ratio[..., None], 0.0, 1.0)
    shaded_srgb = np.where(shaded <= 0.0031308, shaded * 12.92, 1.055 * shaded ** (1 / 2.4) - 0.055)
    shaded_lab = cv2.cvtColor(shaded_srgb.astype(np.float32), cv2.COLOR_RGB2Lab)
    chroma = np.hypot(lab[..., 1] - shaded_lab[..., 1], lab[..., 2] - shaded_lab[..., 2])
    return chroma.astype(np.float32), (lab[..., 0] - field_lab[..., 0]).astype(np.float32)


def _distance(chroma: np.ndarray, lightness: np.ndarray) -> np.ndarray:
    """ΔE from the background field with darkening discounted by ``SHADOW_WEIGHT``."""
    light = np.where(lightness < 0, lightness * SHADOW_WEIGHT, lightness)
    return np.sqrt(chroma * chroma + light * light)


def _background_like(chroma: np.ndarray, lightness: np.ndarray, spread: float) -> np.ndarray:
    """Pixels the field explains: its colour, or its colour in a soft shadow."""
    tolerance = max(LIKE_DE, 3.0 * spread) if math.isfinite(spread) else LIKE_DE
    return (chroma < tolerance) & (lightness < tolerance) & (lightness > -SHADOW_DL)


def _edges(lab: np.ndarray, ring: np.ndarray) -> np.ndarray:
    """Strong colour edges of the reduced copy: Sobel's gradient in CIELAB (ΔE per pixel)
    above ``EDGE_DE`` and above three times its 90th percentile over the plain border."""
    import cv2

    square = np.zeros(lab.shape[:2], np.float32)
    for channel in cv2.split(lab):
        gx = cv2.Sobel(channel, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
        gy = cv2.Sobel(channel, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
        square += gx * gx + gy * gy
    noise = float(np.percentile(square[ring], 90)) if ring.any() else 0.0
    return np.asarray(square > max(EDGE_DE**2, 9.0 * noise))


def _clip01(value: float) -> float:
    return min(1.0, max(0.0, value))


# --- local colour estimates -----------------------------------------------------------


def _spread_colours(rgb: np.ndarray, weight: np.ndarray, sigma: float, fallback: np.ndarray) -> np.ndarray:
    """The colours of the ``weight``ed pixels spread over the whole frame (normalised convolution).

    Near those pixels it is their local colour; far from all of them, the blur of a wider
    one, then ``fallback``.
    """
    import cv2

    out = np.empty(rgb.shape, np.float32)
    out[:] = fallback
    filled = np.zeros(weight.shape, bool)
    w = weight.astype(np.float32)
    for s in (sigma, sigma * 6):
        norm = cv2.GaussianBlur(w, (0, 0), s)
        colour = cv2.GaussianBlur(rgb.astype(np.float32) * w[..., None], (0, 0), s)
        take = (norm > 1e-3) & ~filled
        out[take] = colour[take] / norm[take, None]
        filled |= take
    return out


def _sample(image: np.ndarray, xs: np.ndarray, ys: np.ndarray, scale_x: float, scale_y: float) -> np.ndarray:
    """Bilinear samples of a reduced float image at full-resolution pixel centres."""
    import cv2

    count = len(xs)
    rows = -(-count // _REMAP_ROW)  # remap's maps must stay under 32767 on each side
    map_x = np.zeros(rows * _REMAP_ROW, np.float32)
    map_y = np.zeros(rows * _REMAP_ROW, np.float32)
    map_x[:count] = (xs + 0.5) * scale_x - 0.5
    map_y[:count] = (ys + 0.5) * scale_y - 0.5
    shape = (rows, _REMAP_ROW)
    sampled = cv2.remap(
        image, map_x.reshape(shape), map_y.reshape(shape), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return sampled.reshape(rows * _REMAP_ROW, -1)[:count]


_REMAP_ROW = 4096


# --- the operation ---------------------------------------------------------------------


@dataclass
class _Context:
    """What the steps of one run share. Made per input and never reused.

    ``image`` is the decoded first frame, upright, in sRGB; ``rgb`` its pixels (full size,
    8-bit, writable: the output colours are written into it) and ``alpha_in`` the input's
    own transparency, if any. ``small`` is the reduced copy, ``lab`` it in CIELAB,
    ``background`` the field fitted to its border, ``distance`` each reduced pixel's ΔE
    from it. ``grabcut`` is GrabCut's label map (seeded, then settled) and ``mask`` the
    subject at the reduced size (True = subject); ``seeds`` the probable-foreground seeds
    it started from. ``alpha`` is the full-size alpha; ``confidence`` and ``reason`` the
    judgement; ``details`` what the completion event reports. ``image`` is last the output
    image, and ``rgba`` its pixels when it is transparent (None onto a ``background``);
    ``rendition`` the encoded output.
    """

    data: bytes
    params: CutoutParams
    limits: Limits
    image: Image.Image = field(init=False)
    exif: bytes = b""
    rgb: np.ndarray = field(init=False)
    alpha_in: np.ndarray | None = None
    small: np.ndarray = field(init=False)
    lab: np.ndarray = field(init=False)
    background: _Background = field(init=False)
    distance: np.ndarray = field(init=False)
    like: np.ndarray = field(init=False)
    edges: np.ndarray = field(init=False)
    enclosed: np.ndarray = field(init=False)
    seeds: np.ndarray = field(init=False)
    cut: np.ndarray = field(init=False)
    grabcut: np.ndarray = field(init=False)
    mask: np.ndarray = field(init=False)
    alpha: np.ndarray = field(init=False)
    rgba: np.ndarray | None = None
    confidence: float = 0.0
    reason: str = ""
    details: dict[str, str] = field(default_factory=dict)
    rendition: Rendition = field(init=False)


def _decode(ctx: _Context) -> None:
    ctx.image = decode(ctx.data, ctx.limits)


def _orient(ctx: _Context) -> None:
    ctx.image = orient(ctx.image)


def _metadata(ctx: _Context) -> None:
    if ctx.params.strip:
        return
    ctx.exif = output_exif(ctx.image)


def _colour(ctx: _Context) -> None:
    """sRGB pixels; an input that is already transparent is judged as if on white."""
    img = to_srgb(ctx.image)
    if img.mode == "RGBA":
        ctx.alpha_in = np.array(img.getchannel("A"))
        img = flatten(img, (255, 255, 255))
    ctx.rgb = np.array(img if img.mode == "RGB" else img.convert("RGB"))


def _reduce(ctx: _Context) -> None:
    import cv2

    height, width = ctx.rgb.shape[:2]
    scale = min(1.0, WORK_SIDE / max(width, height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    ctx.small = cv2.resize(ctx.rgb, size, interpolation=cv2.INTER_AREA) if scale < 1.0 else ctx.rgb.copy()
    ctx.lab = _lab(ctx.small)


def _model_background(ctx: _Context) -> None:
    ctx.background = _fit_background(ctx.small, ctx.lab)
    chroma, lightness = _differences(ctx.small, ctx.lab, ctx.background.lab)
    ctx.distance = _distance(chroma, lightness)
    ctx.like = _background_like(chroma, lightness, ctx.background.spread)
    ctx.edges = _edges(ctx.lab, ctx.background.inliers)


def _seed(ctx: _Context) -> None:
    """GrabCut's starting labels: the explained border is background for certain; pixels
    far from the field are probable subject, the clearest of them certain."""
    import cv2

    bg = ctx.background
    threshold = max(SEED_DE, 3.0 * bg.spread) if math.isfinite(bg.spread) else SEED_DE
    seeds = ctx.distance >= threshold
    labels = np.where(seeds, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    sure = cv2.erode((ctx.distance >= SURE_FACTOR * threshold).astype(np.uint8), np.ones((5, 5), np.uint8))
    labels[sure.astype(bool)] = cv2.GC_FGD
    labels[bg.inliers] = cv2.GC_BGD
    ctx.seeds = seeds & ~bg.inliers
    ctx.grabcut = labels


def _segment(ctx: _Context) -> None:
    """GrabCut on the reduced copy, then the subject's specks dropped and holes judged."""
    import cv2

    labels = ctx.grabcut
    if ctx.seeds.any() and (labels != cv2.GC_BGD).any():
        cv2.setRNGSeed(0)
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.grabCut(ctx.small, labels, (0, 0, 0, 0), bgd, fgd, GRABCUT_ITERATIONS, cv2.GC_INIT_WITH_MASK)
    ctx.cut = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
    mask = _grow(_drop_specks(ctx.cut), ctx.like)
    ctx.enclosed = _enclosed(mask, ctx.edges, ctx.background.ring)
    ctx.mask = _fill_holes(mask | ctx.enclosed, ctx.like, ctx.background.ring)


def _off_outline(mask: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Strong edges more than three pixels from the subject (its own outline is nearer)."""
    import cv2

    return edges & ~cv2.dilate(mask.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)


def _enclosed(mask: np.ndarray, edges: np.ndarray, ring: np.ndarray) -> np.ndarray:
    """What strong edges off the outline close off from the border, with those edges.

    A part of the product the colour of the background (a pale grey panel on white, a
    light label on grey) is given to the background by the colour models and by the
    shadow rule, but its outline against the backdrop is still a sharp edge: a region
    that such an edge and the subject shut off from the border is subject. A hole the
    subject alone encloses (a handle's gap) is not touched here (``_fill_holes``).
    """
    import cv2

    free = ~mask & ~edges
    count, labels = cv2.connectedComponents(free.astype(np.uint8), connectivity=4)
    fill = np.zeros(count, bool)
    beside = cv2.dilate(_off_outline(mask, edges).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    fill[np.unique(labels[beside & free])] = True
    fill[np.unique(labels[ring])] = False
    fill[0] = False
    _, holes = cv2.connectedComponents((~mask).astype(np.uint8), connectivity=4)
    open_to_border = np.isin(holes, np.unique(holes[ring]))
    region = fill[labels] & open_to_border
    if not region.any():
        return region
    return region | (cv2.dilate(region.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool) & edges)


def _grow(mask: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Add what touches the subject and is not background: GrabCut's colour models may give
    a pale part of a product (a white label) to the background, which it is not."""
    import cv2

    count, labels = cv2.connectedComponents((mask | ~like).astype(np.uint8), connectivity=8)
    keep = np.zeros(count, bool)
    keep[np.unique(labels[mask])] = True
    keep[0] = False
    return np.asarray(keep[labels])


def _drop_specks(mask: np.ndarray) -> np.ndarray:
    """Keep the parts of the subject at least 2 % the size of its largest part."""
    import cv2

    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return mask
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.concatenate([[False], areas >= 0.02 * areas.max()])
    return np.asarray(keep[labels])


def _fill_holes(mask: np.ndarray, like: np.ndarray, ring: np.ndarray) -> np.ndarray:
    """Enclosed regions that are mostly not background (shadowed or not) become subject."""
    import cv2

    count, labels = cv2.connectedComponents((~mask).astype(np.uint8), connectivity=4)
    if count <= 2:
        return mask
    touching = np.zeros(count, bool)
    touching[np.unique(labels[ring])] = True
    explained = np.bincount(labels.ravel(), weights=like.ravel().astype(np.float64), minlength=count)
    sizes = np.bincount(labels.ravel(), minlength=count)
    fill = ~touching & (explained / np.maximum(sizes, 1) < HOLE_SHARE)
    fill[0] = False
    return mask | fill[labels]


def _judge(ctx: _Context) -> None:
    """Confidence is the weakest check; strict runs stop here when it is too low."""
    import cv2

    bg, mask = ctx.background, ctx.mask
    coverage = float(mask.mean())
    inside = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8))
    edge = cv2.morphologyEx(inside, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)).astype(bool) & inside.astype(bool)
    contrast = float(np.median(ctx.distance[edge])) if edge.any() else 0.0
    found = ctx.cut | ctx.enclosed
    union = np.count_nonzero(found | mask)
    agreement = np.count_nonzero(found & mask) / union if union else 0.0
    stray = _long_edges(_off_outline(mask, ctx.edges)) / max(int(np.count_nonzero(edge)), 1)
    enclosed = int(np.count_nonzero(ctx.enclosed & mask)) / max(int(np.count_nonzero(mask)), 1)
    checks = {
        "the border is not one colour field": _clip01((bg.inlier_share - 0.55) / 0.3),
        "the background is not plain": _clip01((12.0 - bg.spread) / 8.0) if math.isfinite(bg.spread) else 0.0,
        "the subject hardly stands out from the background": _clip01((contrast - 4.0) / 8.0),
        "the outline does not follow the colours": _clip01((agreement - 0.6) / 0.3),
        "no subject of sensible size was found": 1.0 if 0.002 <= coverage <= 0.92 else 0.0,
        "edges run outside the outline (part of the subject may be cut off)": _clip01(1.0 - stray / (2 * STRAY_SHARE)),
        "much of the subject stands out by its outline only": _clip01(1.0 - enclosed / (2 * ENCLOSED_SHARE)),
    }
    ctx.reason, ctx.confidence = min(checks.items(), key=lambda item: item[1])
    trusted = ctx.confidence >= MIN_CONFIDENCE
    ctx.details.update(
        confidence=f"{ctx.confidence:.2f}",
        trusted=str(trusted).lower(),
        background_colour=bytes(bg.colour).hex(),
        border_plain_share=f"{bg.inlier_share:.2f}",
        border_spread_de=f"{bg.spread:.1f}" if math.isfinite(bg.spread) else "inf",
        edge_contrast_de=f"{contrast:.1f}",
        stray_edge_share=f"{stray:.3f}",
        enclosed_share=f"{enclosed:.3f}",
        coverage=f"{coverage:.3f}",
    )
    if not trusted:
        ctx.details["reason"] = ctx.reason
        if ctx.params.strict:
            raise BackgroundNotPlain(
                f"cutout: {ctx.reason} (confidence {ctx.confidence:.2f} < {MIN_CONFIDENCE}); "
                "pass strict=false to accept the result anyway"
            )


def _long_edges(edges: np.ndarray) -> int:
    """Pixels of the edges at least ``STRAY_LENGTH`` long (specks on the backdrop left out)."""
    import cv2

    count, _, stats, _ = cv2.connectedComponentsWithStats(edges.astype(np.uint8), connectivity=8)
    if count <= 1:
        return 0
    extent = np.maximum(stats[1:, cv2.CC_STAT_WIDTH], stats[1:, cv2.CC_STAT_HEIGHT])
    return int(stats[1:, cv2.CC_STAT_AREA][extent >= STRAY_LENGTH].sum())


def _refine(ctx: _Context) -> None:
    """Alpha and decontaminated colour in the band around the outline, at full size."""
    import cv2

    rgb, small, mask = ctx.rgb, ctx.small, ctx.mask
    height, width = rgb.shape[:2]
    kernel = np.ones((2 * BAND + 1, 2 * BAND + 1), np.uint8)
    mask8 = mask.astype(np.uint8)
    inner = cv2.erode(mask8, kernel).astype(bool)
    outer = ~cv2.dilate(mask8, kernel).astype(bool)
    band_small = (~inner & ~outer).astype(np.uint8)
    fallback_fg = small[mask].mean(axis=0) if mask.any() else np.zeros(3)
    colour_fg = _spread_colours(small, inner if inner.any() else mask, 1.5, fallback_fg)
    colour_bg = _spread_colours(small, outer, 1.5, np.asarray(ctx.background.colour, np.float32))
    size = (width, height)
    ctx.alpha = cv2.resize(mask8 * 255, size, interpolation=cv2.INTER_NEAREST)
    band = cv2.findNonZero(cv2.resize(band_small, size, interpolation=cv2.INTER_NEAREST))
    if band is not None:
        xs, ys = np.ascontiguousarray(band[:, 0, 0]), np.ascontiguousarray(band[:, 0, 1])
        sx, sy = small.shape[1] / width, small.shape[0] / height
        image = rgb[ys, xs].astype(np.float32)
        fg = _sample(colour_fg, xs, ys, sx, sy)
        bg = _sample(colour_bg, xs, ys, sx, sy)
        coarse = _sample(mask8.astype(np.float32), xs, ys, sx, sy)[:, 0]
        alpha, colour = _blend(image, fg, bg, coarse)
        ctx.alpha[ys, xs] = np.rint(alpha * 255.0).astype(np.uint8)
        rgb[ys, xs] = colour
    if ctx.alpha_in is not None:
        np.minimum(ctx.alpha, ctx.alpha_in, out=ctx.alpha)
    _fill_transparent(rgb, ctx.alpha, cv2.dilate(mask8, kernel), colour_fg, fallback_fg)


def _fill_transparent(
    rgb: np.ndarray, alpha: np.ndarray, visible: np.ndarray, colour_fg: np.ndarray, constant: np.ndarray
) -> None:
    """The colours under ``alpha == 0``: the subject's, spread ``SPREAD_PX`` past it; one colour beyond.

    ``visible`` (reduced) covers every pixel that may have alpha. A resampling that does
    not premultiply (upscale's Lanczos and network) reads a few pixels past the edge, so
    those carry the subject's colours; farther out nothing reads them, and one constant
    colour there (the subject's mean) leaves PNG almost nothing to encode.
    """
    import cv2

    height, width = alpha.shape
    reach = math.ceil(SPREAD_PX * max(visible.shape[1] / width, visible.shape[0] / height))
    near = cv2.dilate(visible, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1, 2 * reach + 1)))
    spread = np.empty(colour_fg.shape, np.uint8)
    spread[:] = np.clip(np.rint(constant), 0, 255).astype(np.uint8)
    np.copyto(spread, np.clip(np.rint(colour_fg), 0, 255).astype(np.uint8), where=near.astype(bool)[..., None])
    full = cv2.resize(spread, (width, height), interpolation=cv2.INTER_LINEAR)
    cv2.copyTo(full, (alpha == 0).view(np.uint8), rgb)


def _blend(image: np.ndarray, fg: np.ndarray, bg: np.ndarray, coarse: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel: alpha of ``image`` as a blend of ``fg`` over ``bg`` and its colour unblended.

    Where the blend does not explain the pixel or the two colours are too alike, the
    reduced mask's own (bilinear) alpha stands, and the colour is the local subject colour
    nudged by the pixel's own detail.
    """
    span = fg - bg
    span2 = np.einsum("ij,ij->i", span, span)
    alpha = np.clip(np.einsum("ij,ij->i", image - bg, span) / np.maximum(span2, 1.0), 0.0, 1.0)
    residual = np.linalg.norm(image - (bg + alpha[:, None] * span), axis=1)
    trusted = (span2 >= MIN_EDGE_CONTRAST**2) & (residual <= MAX_BLEND_RESIDUAL)
    alpha = np.where(trusted, alpha, np.clip(coarse, 0.0, 1.0))
    alpha = np.where(alpha < ALPHA_SNAP, 0.0, np.where(alpha > 1.0 - ALPHA_SNAP, 1.0, alpha))
    unblended = bg + (image - bg) / np.maximum(alpha, 0.05)[:, None]
    weight = np.clip((alpha - 0.25) / 0.5, 0.0, 1.0)[:, None]
    colour = np.where(
        trusted[:, None], weight * unblended + (1.0 - weight) * fg, np.where(alpha[:, None] > 0.5, image, fg)
    )
    return alpha, np.clip(np.rint(colour), 0, 255).astype(np.uint8)


def _compose(ctx: _Context) -> None:
    """The output image: trimmed and padded if asked, onto ``background`` if given.

    A padding repeats the edge's colours outwards (under alpha 0), as ``_refine`` spreads
    them, so that nothing dark is drawn in at the edge when the output is resampled.
    """
    import cv2

    p, rgb, alpha = ctx.params, ctx.rgb, ctx.alpha
    if p.trim:
        x, y, w, h = cv2.boundingRect(alpha)
        if w and h:
            pad = math.ceil(max(w, h) * p.padding / 100)
            rgb = cv2.copyMakeBorder(rgb[y : y + h, x : x + w], pad, pad, pad, pad, cv2.BORDER_REPLICATE)
            alpha = cv2.copyMakeBorder(alpha[y : y + h, x : x + w], pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
            ctx.details["subject_box"] = f"{x},{y},{w},{h}"
    if p.background is not None:
        flat = Image.new("RGB", (rgb.shape[1], rgb.shape[0]), p.background)
        flat.paste(Image.fromarray(rgb), mask=Image.fromarray(alpha))
        ctx.image = flat
    else:
        ctx.rgba = cv2.cvtColor(rgb, cv2.COLOR_RGB2RGBA)
        ctx.rgba[..., 3] = alpha
        ctx.image = Image.fromarray(ctx.rgba)  # shares ctx.rgba's memory


def _transparent_png(rgba: np.ndarray, exif: bytes) -> bytes:
    """A transparent PNG, written by OpenCV with the Up filter on every row.

    Pillow tries five filters on each row and keeps the best; on a 12-megapixel RGBA
    output that choice costs more than the whole cut. One fixed filter at ``PNG_LEVEL``
    writes files about as small (within a few percent) in a third of the time.
    """
    import cv2

    bgra = cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA)
    options = [cv2.IMWRITE_PNG_COMPRESSION, PNG_LEVEL, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP]
    if exif:
        tiff = np.frombuffer(exif.removeprefix(b"Exif\x00\x00"), np.uint8)
        ok, data = cv2.imencodeWithMetadata(".png", bgra, [cv2.IMAGE_METADATA_EXIF], [tiff], options)
    else:
        ok, data = cv2.imencode(".png", bgra, options)
    if not ok:
        raise ProcessingFailed("cutout: OpenCV could not encode the PNG")
    return bytes(data.tobytes())


def _encode(ctx: _Context) -> None:
    """A transparent PNG by ``_transparent_png``; any other output by ``processors.quality``."""
    p, img = ctx.params, ctx.image
    fmt = format_for(p.format, img)
    if ctx.rgba is not None and fmt is PNG:
        data = _transparent_png(ctx.rgba, ctx.exif)
    else:
        encoded = quality.encode_at(img, fmt, p.quality, background=p.background or (255, 255, 255), exif=ctx.exif)
        ctx.details.update(quality.details([encoded]))
        data = encoded.data
    ctx.rendition = Rendition(
        name="cutout",
        data=data,
        width=img.width,
        height=img.height,
        content_type=fmt.content_type,
        extension=fmt.extension,
    )


_STEPS: tuple[Callable[[_Context], None], ...] = (
    _decode,
    _orient,
    _metadata,
    _colour,
    _reduce,
    _model_background,
    _seed,
    _segment,
    _judge,
    _refine,
    _compose,
    _encode,
)


class Cutout:
    """The ``cutout`` operation (see ``processors.operation.Operation``)."""

    name = "cutout"
    version = "2"
    max_batch = 8
    omitted_defaults = quality.OMITTED_DEFAULTS
    """Named in canonical params only with ``quality=auto``."""

    def parse_params(self, raw: Mapping[str, str]) -> CutoutParams:
        """Parse the parameters; every one is optional.

        - ``background``: ``none`` (default: transparent) or a hex colour (``ffffff``) to
          composite the subject onto; the output is then opaque.
        - ``trim``: ``true`` crops to the subject (default ``false``: the input's size).
        - ``padding``: margin around a trimmed subject, percent of its longer side, 0..100
          (default 0); needs ``trim=true``.
        - ``strict``: ``true`` (default) fails with ``background_not_plain`` when the
          background is not plain enough to trust the cut; ``false`` completes and reports
          ``trusted`` and ``confidence`` in the details.
        - ``format`` (auto, png, webp, avif, jpeg, jpg; default auto: PNG while transparent,
          JPEG onto a background), ``quality`` (1..100 or ``auto``, default 90), ``quality_target``,
          ``strip`` (drop EXIF, default true).
        """
        parsed = CutoutParams(**params.parse_fields("cutout", raw, _PARSERS))
        if parsed.padding and not parsed.trim:
            raise InvalidParameters("cutout: padding needs trim=true")
        return parsed

    def canonical_params(self, params: CutoutParams) -> dict[str, str]:
        """Every parameter, defaults included, in one spelling (``FFFFFF`` → ``ffffff``)."""
        return {
            "background": "none" if params.background is None else bytes(params.background).hex(),
            "format": format_name(params.format),
            "padding": str(params.padding),
            **quality.canonical(params.quality),
            "strict": str(params.strict).lower(),
            "strip": str(params.strip).lower(),
            "trim": str(params.trim).lower(),
        }

    def plan(self, data: bytes, params: CutoutParams, limits: Limits) -> dict[str, str]:
        """Nothing but the input and the params decides the bytes."""
        return {}

    def run(self, data: bytes, params: CutoutParams, limits: Limits) -> StepResult:
        """One rendition, ``cutout``: the input's size, or the subject's box when trimming."""
        ctx = _Context(data=data, params=params, limits=limits)
        for step in _STEPS:
            step(ctx)
        return StepResult(renditions=[ctx.rendition], backend="opencv", details=ctx.details)


CUTOUT = Cutout()
