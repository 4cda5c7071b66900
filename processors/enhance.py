"""enhance: automatic photo correction decided from measurements of the image itself.

The recipe is ``_STEPS``: decode → orient → metadata → colour → split alpha → measure →
plan tone → plan detail → render → join alpha → encode. Every step is a small function
over one ``_Context``; nothing about an image outlives its run, and every decision is a
pure function of the pixels, so the same input and params always give the same bytes.

Tone (white balance, exposure, contrast) becomes one 256-entry curve per channel; white
balance and exposure act in linear light, where a colour cast and an exposure error
happen, contrast in sRGB, like a levels tool. The decisions come from a downsampled copy
(gray-edge illuminant, log-average luminance, median tone), from half-resolution
histograms (clipping, black and white points) and from the noise level measured in
full-resolution tiles. Detail (denoise and sharpen) works on a fine band, ``image -
low_pass(image)``, cored against that noise level: noise-sized swings are removed,
larger ones (edges) kept, and the kept detail can be boosted up to a cap that prevents
halos. All full-size work is 8-bit Pillow operations done a strip at a time, in place:
a 12-megapixel photo takes well under a second on one core, and the peak memory is
about two decoded images, the JPEG encoder's own buffers included.

Every automatic correction has a dead zone and a cap: a well-exposed, neutral, clean
photo gets no correction at all, and a scene that is only *probably* wrong (a sunset,
a night shot, a cat that really is orange) is corrected partly rather than flattened to
gray. The amounts are reported rounded as they were applied, so passing them back as
params reproduces the output exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from PIL import Image, ImageChops

from processors import params, quality
from processors.image import (
    OutputFormat,
    decode,
    format_for,
    format_name,
    orient,
    output_exif,
    to_srgb,
)
from processors.operation import Limits, Rendition, StepResult

Switch = Literal["auto", "off"]
Amount = float | Switch
Gains = tuple[float, float, float]
Sigmas = tuple[float, float]
"""Luma and chroma noise σ in 8-bit levels."""

_LUMA = np.array([0.2126, 0.7152, 0.0722])
"""Rec. 709 / sRGB luminance weights, for linear-light measurements."""

STATS_SIDE = 512
"""Longest side of the downsampled copy that global statistics are taken from."""

MIN_PIXELS = 64
"""Fewer measurable pixels than this (tiny or nearly transparent images): no automatic correction."""

# White balance: the illuminant is estimated by gray-edge (the Minkowski-6 mean of each
# channel's gradients is achromatic in most scenes; better than gray-world on photos of
# coloured things). On real neutral photos its log-chroma error reaches ~0.1 along the
# warm-cool (blackbody) axis and ~0.35 along green-magenta, where real light sources
# rarely stray; that much is treated as the scene's own colour (dead zone), the rest is
# corrected, capped. A cast well past the dead zone is no longer plausibly the scene's:
# from ``WB_FULL`` × the dead zone on, all of it is taken out, the scene's own share then
# being as likely to add to the cast as to cancel it; in between, the correction ramps up.
# An estimate beyond what any real light leaves is the scene's own colour: the warm-cool
# correction fades out over ``WB_IMPLAUSIBLE`` (see ``_plausible``).
WB_DEAD_ZONES = (0.1, 0.4)
WB_CAPS = (0.7, 0.3)
WB_FULL = 2.5
WB_IMPLAUSIBLE = (0.7, 0.9)
"""Warm-cool estimates from which the correction fades out, and where it is gone (see ``_plausible``)."""

# Exposure, brightening: towards a log-average luminance of 0.18 (middle gray) past a
# dead zone, but never further than the highlights allow (the 99.9th percentile may reach
# 0.95 linear), so a night scene whose lights already reach white is left alone.
KEY_TARGET = 0.18
KEY_DEAD_ZONE_EV = 0.5
HEADROOM_TARGET = 0.95
HIGHLIGHT_QUANTILE = 0.999
SHOULDER_KNEE = 0.9
"""Linear level above which brightened highlights roll off into white instead of clipping."""
# Exposure, darkening: an over-exposed photo is one whose highlights were cut off inside
# its content, so the evidence is clipped pixels (a channel at its clip level) that
# border detailed, unclipped ones, counted on a half-size copy of the downsampled image
# (noise speckles average out there). Well-exposed photos have at most ~0.4% such pixels;
# a white backdrop, snow or an overcast sky has next to none, since nothing detailed
# borders its clipping. A channel's clip level is ``BLOWN``, or lower where its histogram
# ends in a spike (at least ``CLIP_SPIKE`` times the levels below, ``CLIP_MIN_SHARE`` of
# the pixels, from ``CLIP_MIN_LEVEL`` up): a white balance applied after the sensor
# clipped (as cameras do) leaves that channel's clipped pixels short of 255.
# From ``CLIP_EDGE_FLOOR`` to ``CLIP_EDGE_FULL`` the evidence ramps to 1, and the image
# is darkened by that share of the larger of two estimates of the gain, at most
# ``MAX_DARKEN_EV``: the gain that brings the median tone back to ``BRIGHT_MEDIAN`` (sRGB;
# typical photos sit at 0.2-0.5), which misses photos whose content is dark or bright by
# nature, and the clipped tail's extent (see ``_clipped_tail_ev``), which does not look
# at the median at all but misses content that never reached white. The inverse gain is
# exact below ``DARKEN_KNEE`` (linear); clipped pixels go to the expected level of what
# was cut off (see ``_darken``). A white background (a quarter of the image or more
# pure white) is left out of the median and the tail estimate is not used: the product
# on it is what is judged.
BRIGHT_MEDIAN = 0.48
BLOWN = 254
CLIP_SPIKE = 4.0
CLIP_MIN_SHARE = 0.002
CLIP_MIN_LEVEL = 192
TAIL_BAND_EV = 0.2
"""Width, below a channel's clip level, of the band whose density the clipped tail is extrapolated from."""
CAST_CLIP = 0.85
"""A band clipping, after the white balance gains, below this share of the brightest band's white (its clip
level, or the top of its content, at most 1.0): a cast's clip, not an exposure's."""
TEXTURE = 0.01
"""Luma step (sRGB 0..1) to a neighbour in the half-size copy from which a pixel counts as detail."""
CLIP_EDGE_FLOOR = 0.005
CLIP_EDGE_FULL = 0.02
MAX_DARKEN_EV = 1.5
WHITE = 252
"""8-bit level from which a pixel whose every channel is this bright counts as pure white."""
WHITE_BACKGROUND = 0.25
DARKEN_KNEE = 0.9
CLIPPED_SHARE = 1 / 3
"""Where, between the darkened clip level and 1.0, the mean of a linearly tapering cut-off tail lies."""
MIN_SIDE = 32
"""Shorter side (downsampled copy) below which clipped edges are counted without halving it first."""
MAX_EV = 3.0

# Contrast: a levels stretch of the 0.1%-99.9% range towards 0-1. A range that already
# spans more than e^-0.18 ≈ 84% is left alone; below that it is stretched by the shortfall,
# which grows in quadratically over its first 0.08 (a photo just past the dead zone gets a
# barely visible stretch, not a 4% one) and one for one after. A range that is clearly
# washed out (``CONTRAST_FULL`` past the dead zone) is stretched all the way to
# ``FULL_SPREAD``, the span of a typical photo, ramping there smoothly.
LEVELS_QUANTILE = 0.001
CONTRAST_DEAD_ZONE = 0.18
CONTRAST_ONSET = 0.08
CONTRAST_FULL = 0.4
FULL_SPREAD = 0.95
MAX_CONTRAST = 2.0
FLAT_SPREAD = 0.1
"""Tones spanning less than this are a flat subject (a wall, a sky), not a washed-out photo: not stretched."""
FLARE_BLACK = 0.1
"""Black point (sRGB) from which the blacks count as lifted: a flare, haze or fade added on top of the
exposed, colour-cast image, so the levels map that takes it out goes first (see ``_Tone``)."""
NOISE_TAIL = 1.5
"""How far, in luma noise σ, noise pushes the extreme quantiles of the half-size histograms out."""

# Saturation: only a dull image (90th percentile of chroma below 0.2) with some colour in
# it (above 0.1; a near-gray scene stays gray) is boosted, by at most 20%.
DULL_CHROMA = 0.2
GRAY_CHROMA = 0.1
MAX_SATURATION = 1.2

# Detail: noise is measured in 64-pixel tiles at full resolution (a downsampled copy
# averages it away), from the flattest quarter of their 16-pixel blocks.
TILE = 64
TILES = 8
BLOCK = 16
NOISE_QUANTILE = 25
NOISE_FLOOR = 1.5
"""Luma noise σ (8-bit levels) below which denoising is skipped: invisible, and removing it costs detail."""
LUMA_CORING = 3.0
CHROMA_CORING = 6.0
"""Coring thresholds in multiples of the measured σ: fine-band swings near them are noise."""
CHROMA_SCALE = 4
"""Chroma is cored against a 4-pixel low-pass (luma: 2): colour noise is coarse and the eye forgives soft colour."""
STRIP = 256
STRIP_MARGIN = 16
"""Rows worked on at a time, and rows of context on each side (multiples of the 4-pixel low-pass)."""
HALO_LIMIT = 12.0
"""Largest change, in 8-bit levels, that sharpening may make to a pixel: no bright or dark rims."""
SHARPEN_TARGET = 0.9
SHARPEN_DEAD_ZONE = 0.2
"""Softness up to this is a lens's or a subject's own (a fundus photo, a portrait): not sharpened; the
amount fades in up to twice it, so that sharpening never jumps in."""
MAX_AUTO_SHARPEN = 0.6


@dataclass(frozen=True, kw_only=True)
class EnhanceParams:
    """Parsed ``enhance`` parameters; see ``Enhance.parse_params`` for their spelling.

    Each correction is ``"auto"`` (decided from the image, scaled by ``strength``),
    ``"off"``, or an explicit amount applied as given. Amounts use the units and the
    precision the completion event reports, so an automatic result can be reproduced
    exactly, or adjusted, by passing the reported amounts back.
    """

    strength: float = 1.0
    exposure: Amount = "auto"
    contrast: Amount = "auto"
    white_balance: Gains | Switch = "auto"
    saturation: Amount = "auto"
    denoise: Sigmas | Switch = "auto"
    sharpen: Amount = "auto"
    format: OutputFormat | None = None  # auto: PNG when the image has transparency, else JPEG
    quality: quality.Quality = 90
    strip: bool = True


def _switch(value: str) -> Switch | None:
    return "auto" if value == "auto" else "off" if value == "off" else None


def _amount(low: float, high: float, unit: str) -> Callable[[str], Amount]:
    def parse(value: str) -> Amount:
        switch = _switch(value)
        return switch if switch else params.number(value, low, high, f"auto, off or {unit} {low:g}..{high:g}")

    return parse


def _parse_gains(value: str) -> Gains | Switch:
    switch = _switch(value)
    if switch:
        return switch
    expected = "auto, off or three linear gains R+G+B, each 0.25..4"
    parts = value.split("+")
    if len(parts) != 3:
        raise ValueError(expected)
    r, g, b = (params.number(part, 0.25, 4.0, expected) for part in parts)
    return (r, g, b)


def _parse_sigmas(value: str) -> Sigmas | Switch:
    switch = _switch(value)
    if switch:
        return switch
    expected = "auto, off, a noise sigma 0..50 (8-bit levels) or luma+chroma sigmas"
    parts = value.split("+")
    if len(parts) > 2:
        raise ValueError(expected)
    sigmas = [params.number(part, 0.0, 50.0, expected) for part in parts]
    return (sigmas[0], sigmas[-1])


def _parse_strength(value: str) -> float:
    return params.number(value, 0.0, 1.0, "a number 0..1")


_PARSERS: Mapping[str, params.Parser] = {
    "contrast": _amount(0.25, 4.0, "a levels slope"),
    "denoise": _parse_sigmas,
    "exposure": _amount(-MAX_EV, MAX_EV, "EV"),
    "format": params.output_format,
    "quality": params.quality,
    "quality_target": params.quality_target,
    "saturation": _amount(0.0, 3.0, "a factor"),
    "sharpen": _amount(0.0, 3.0, "an amount"),
    "strength": _parse_strength,
    "strip": params.boolean,
    "white_balance": _parse_gains,
}


def _spell(value: float | str | tuple[float, ...]) -> str:
    if isinstance(value, tuple):
        return "+".join(_spell(v) for v in value)
    return value if isinstance(value, str) else f"{value:g}"


# --- colour math on small arrays --------------------------------------------------------


def _to_linear(v: np.ndarray) -> np.ndarray:
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def _linear(v: float) -> float:
    return float(_to_linear(np.array(v)))


def _to_srgb(lin: np.ndarray) -> np.ndarray:
    lin = np.clip(lin, 0.0, 1.0)
    return np.where(lin <= 0.0031308, lin * 12.92, 1.055 * lin ** (1 / 2.4) - 0.055)


_LEVELS = np.arange(256) / 255.0
_LINEAR_LEVELS = _to_linear(_LEVELS)


def _quantile(hist: np.ndarray, q: float) -> float:
    """The level (0..1) below which a fraction ``q`` of a 256-bin histogram lies."""
    cumulative = np.cumsum(hist)
    return float(np.searchsorted(cumulative, q * cumulative[-1])) / 255.0


def _to_table(curve: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(curve, 0.0, 1.0) * 255.0).astype(np.intp)


@dataclass(frozen=True)
class _Tone:
    """The global correction: linear-light gains and exposure, then a levels map in sRGB.

    With ``levels_first`` the levels map comes before the gains instead: a photo whose
    blacks are lifted (``FLARE_BLACK``) saw its flare or fade added after the light's
    colour and the exposure, as ``observed = flare + gain × scene``, so it is undone
    first, and a gain applied to the flare would tint the blacks.

    ``ev`` > 0 is a gain whose highlights roll off into white; ``ev`` < 0 is a gain
    whose clipped highlights go to the expected level of what was cut off (``_darken``).
    With ``neutral_white`` input white stays neutral in every channel, since a clipped
    highlight's true colour is unknown (see ``_has_white``). The levels map scales by
    ``slope`` around ``pivot`` (sRGB 0..1).
    """

    gains: Gains = (1.0, 1.0, 1.0)
    ev: float = 0.0
    pivot: float = 0.5
    slope: float = 1.0
    levels_first: bool = False
    neutral_white: bool = True

    @property
    def identity(self) -> bool:
        return self.gains == (1.0, 1.0, 1.0) and self.ev == 0.0 and self.slope == 1.0

    def levels(self, srgb: np.ndarray) -> np.ndarray:
        return self.pivot + (srgb - self.pivot) * self.slope

    def curves(self, bands: int) -> np.ndarray:
        """One curve per band, 0..1 over the 256 input levels."""
        gains = self.gains[:bands]
        scale = 2.0 ** max(self.ev, 0.0)
        top = float(_to_srgb(_darken(np.array(1.0), 2.0**self.ev))) if self.ev < 0 else 1.0
        base = _to_linear(np.clip(self.levels(_LEVELS), 0.0, 1.0)) if self.levels_first else _LINEAR_LEVELS
        out = []
        for gain in gains:
            lin = _shoulder(base * gain * scale, max(gains) * scale)
            if self.ev < 0:
                lin = _darken(lin, 2.0**self.ev)
            srgb = _to_srgb(lin)
            if self.neutral_white:
                srgb += (top - srgb[-1]) * _WHITE_BLEND
            out.append(srgb if self.levels_first else self.levels(srgb))
        return np.stack(out)

    def tables(self, bands: int) -> np.ndarray:
        return _to_table(self.curves(bands))


_WHITE_BLEND = np.clip((_LEVELS - 0.85) / 0.15, 0.0, 1.0) ** 2
"""How much of the way to the top each input level is pulled when a channel's gain would leave it short of it."""


def _darken(lin: np.ndarray, gain: float) -> np.ndarray:
    """The exact inverse ``gain`` < 1 below ``DARKEN_KNEE``; above it a straight line to the fill level at 1.0.

    A clipped pixel was anything from the clip level up, and most of an over-exposed
    photo's highlights are clipped, so where they go decides much of the colour error:
    white (the gain's top) is off by the whole cut-off range, the expected value of a
    tail whose density tapers linearly to zero at white (``CLIPPED_SHARE`` of the way up)
    by much less, and it stays above every unclipped pixel.
    """
    fill = gain + (1.0 - gain) * CLIPPED_SHARE
    t = np.clip((lin - DARKEN_KNEE) / (1.0 - DARKEN_KNEE), 0.0, 1.0)
    return np.where(lin < DARKEN_KNEE, gain * lin, (1.0 - t) * gain * DARKEN_KNEE + t * fill)


def _shoulder(lin: np.ndarray, top: float) -> np.ndarray:
    """Roll values above ``SHOULDER_KNEE`` off so that ``top`` lands on 1.0, slope 1 at the knee."""
    if top <= 1.0:
        return lin
    excess = np.maximum(lin - SHOULDER_KNEE, 0.0)
    rate = 1.0 / (1.0 - SHOULDER_KNEE) - 1.0 / (top - SHOULDER_KNEE)
    return np.where(lin > SHOULDER_KNEE, SHOULDER_KNEE + excess / (1.0 + excess * rate), lin)


# --- measurements --------------------------------------------------------------------


@dataclass(frozen=True)
class _Stats:
    """What the tone decisions are made from, taken once from the upright sRGB image.

    ``small`` is the image box-downsampled to at most ``STATS_SIDE`` (8-bit, H×W×bands)
    and ``valid`` marks its pixels that are mostly opaque; ``hists`` are per-band
    histograms of the opaque pixels at half resolution, ``count`` how many pixels they
    hold; ``noise`` is the luma noise σ (8-bit levels) measured at full resolution.
    """

    small: np.ndarray
    valid: np.ndarray
    hists: np.ndarray
    count: int
    noise: float


def _measure_image(img: Image.Image, alpha: Image.Image | None, tiles: list[tuple[int, int, int, int]]) -> _Stats:
    factor = max(1, math.ceil(max(img.size) / STATS_SIDE))
    small = np.asarray(img.reduce(factor))
    if small.ndim == 2:
        small = small[:, :, None]
    bands = small.shape[2]
    half = img.reduce(2)  # halves the noise that would widen the extremes, keeps all but 1-pixel highlights
    if alpha is None:
        valid = np.ones(small.shape[:2], dtype=bool)
        hists = np.asarray(half.histogram(), dtype=np.float64).reshape(bands, 256)
    else:
        valid = np.asarray(alpha.reduce(factor)) >= 128
        mask = alpha.reduce(2).point(lambda a: 255 if a >= 128 else 0)
        hists = np.asarray(half.histogram(mask), dtype=np.float64).reshape(bands, 256)
    noise = _noise([img.crop(box) for box in tiles])[0]
    return _Stats(small=small, valid=valid, hists=hists, count=int(hists[0].sum()), noise=noise)


def _channel_max(a: np.ndarray) -> np.ndarray:
    """``a.max(axis=2)``, written out: numpy reduces a short last axis slowly."""
    out = a[:, :, 0]
    for c in range(1, a.shape[2]):
        out = np.maximum(out, a[:, :, c])
    return out


def _channel_min(a: np.ndarray) -> np.ndarray:
    out = a[:, :, 0]
    for c in range(1, a.shape[2]):
        out = np.minimum(out, a[:, :, c])
    return out


def _toned(stats: _Stats, tone: _Tone) -> np.ndarray:
    """The downsampled copy after ``tone``, sRGB 0..1: what the next decision looks at."""
    curves = tone.curves(stats.small.shape[2])
    return np.stack([curve[stats.small[:, :, c]] for c, curve in enumerate(curves)], axis=2)


def _halve(a: np.ndarray) -> np.ndarray:
    """2×2 block means (odd edges dropped)."""
    h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
    return (a[0:h:2, 0:w:2] + a[1:h:2, 0:w:2] + a[0:h:2, 1:w:2] + a[1:h:2, 1:w:2]) / 4


def _gray_edge(lin: np.ndarray, valid: np.ndarray) -> np.ndarray | None:
    """The illuminant as (log R/G, log B/G), from the Minkowski-6 norm of each channel's edges.

    Clipped pixels are kept: leaving them out makes the estimate jump when a cast pushes
    a highlight into clipping, while keeping them costs little.
    """
    both = valid[:-1, :-1] & valid[1:, :-1] & valid[:-1, 1:]
    if both.sum() < MIN_PIXELS:
        return None
    gx = np.diff(lin, axis=1)[:-1]
    gy = np.diff(lin, axis=0)[:, :-1]
    squared = (gx * gx + gy * gy)[both]
    norm = np.mean(squared * squared * squared, axis=0) ** (1 / 6)
    if norm.min() <= 0.0:
        return None
    return np.log(norm[[0, 2]] / norm[1])


def _ramp(x: float, zone: float, full: float) -> float:
    """0 up to ``zone``, 1 from ``full`` on, and between them a smooth (C¹) rise."""
    t = min(max((x - zone) / (full - zone), 0.0), 1.0)
    return t * t * (3.0 - 2.0 * t)


def _white_patch(stats: _Stats) -> np.ndarray:
    """Linear gains that make clipped highlights neutral where a band clipped short of white.

    A band whose histogram ends in a spike below ``BLOWN`` (``_clip_levels``) while
    others clip at white had a gain applied after the clip: a white balance after the
    sensor saturated, or a cast on top of an over-exposure. The pixels clipped in every
    band at once were white at the clip, so their colour is that gain, measured
    exactly; it is taken out in full, before the gray-edge estimate of the rest.
    Otherwise (no such band, or fewer than ``CLIP_MIN_SHARE`` jointly clipped pixels):
    no gains.
    """
    levels = _clip_levels(stats)
    if levels.size != 3 or levels.min() >= BLOWN:
        return np.ones(3)
    joint = _channel_min((stats.small >= levels).astype(np.uint8))[stats.valid]
    if joint.size == 0 or joint.mean() < CLIP_MIN_SHARE:
        return np.ones(3)
    white = np.where(levels >= BLOWN, 1.0, _LINEAR_LEVELS[np.minimum(levels, 255)])
    return 1.0 / white


def _plausible(warm: float) -> float:
    """How far a warm-cool estimate (log-chroma) is believed to be the light's: 1, fading to 0.

    The strongest cast a camera really leaves, a daylight white balance under tungsten
    light, is about 0.7 along that axis (``WB_CAPS``). An estimate well past it is not
    a light but the scene's own colour (a fundus photo, a stained slide, a sunset): it
    is corrected less and less from ``WB_IMPLAUSIBLE[0]`` on, not at all from
    ``WB_IMPLAUSIBLE[1]``, so that such a photo keeps its colour however it was exposed.
    """
    low, high = WB_IMPLAUSIBLE
    return 1.0 - _ramp(abs(warm), low, high)


def _auto_gains(stats: _Stats, strength: float) -> Gains:
    """Gains that take the part of the estimated cast beyond the dead zones out, keeping gray's brightness.

    A cast measured exactly on clipped highlights (``_white_patch``) goes first, in full;
    gray-edge then judges what is left.
    """
    patch = _white_patch(stats) ** strength
    lin, valid = (_LINEAR_LEVELS[stats.small] * patch).astype(np.float32), stats.valid
    if stats.noise >= NOISE_FLOOR:
        # Noise edges would outweigh real ones, and most in the brightest channel: smooth first.
        lin, valid = _halve(lin), _halve(valid.astype(np.float32)) == 1.0
    cast = _gray_edge(lin, valid)
    if cast is None:
        cast = np.zeros(2)
    log_r, log_b = cast
    axes = ((log_r - log_b) / math.sqrt(2), (log_r + log_b) / math.sqrt(2))  # warm-cool, magenta-green
    warm, magenta = (
        math.copysign(min(abs(a) * _ramp(abs(a), zone, WB_FULL * zone), cap), a) * strength
        for a, zone, cap in zip(axes, WB_DEAD_ZONES, WB_CAPS, strict=True)
    )
    warm *= _plausible(axes[0])
    rest = (math.exp(-(warm + magenta) / math.sqrt(2)), 1.0, math.exp(-(magenta - warm) / math.sqrt(2)))
    r, g, b = patch * np.array(rest)
    neutral = float(_LUMA @ np.array([r, g, b]))
    return (round(r / neutral, 2), round(g / neutral, 2), round(b / neutral, 2))


def _auto_ev(stats: _Stats, gains: Gains, strength: float) -> float:
    """Brighten towards middle gray within the highlight headroom, or darken blown-out midtones."""
    bands = stats.small.shape[2]
    lin = _LINEAR_LEVELS[stats.small] * np.array(gains)[:bands]
    lum = (lin @ _LUMA if bands == 3 else lin[:, :, 0])[stats.valid]
    key = float(np.exp(np.mean(np.log(lum + 0.001))))
    top = _extremes(stats, _Tone(gains=gains), 1.0 - HIGHLIGHT_QUANTILE)[1]
    headroom = math.log2(HEADROOM_TARGET / max(_linear(top), 1e-6))
    brighten = min(math.log2(KEY_TARGET / key) - KEY_DEAD_ZONE_EV, headroom)
    if brighten > 0:
        return round(min(brighten, MAX_EV) * strength, 2)
    srgb = _toned(stats, _Tone(gains=gains))
    tone = (srgb @ _LUMA if bands == 3 else srgb[:, :, 0])[stats.valid]
    white = _channel_min(srgb)[stats.valid] >= WHITE / 255.0
    if white.mean() >= WHITE_BACKGROUND:
        tone = tone[~white]
    if tone.size < MIN_PIXELS:
        return 0.0
    levels = _clip_levels(stats)
    tops = np.array([_linear(_quantile(hist, HIGHLIGHT_QUANTILE)) for hist in stats.hists])
    whites = np.where(levels >= BLOWN, 1.0, _LINEAR_LEVELS[np.minimum(levels, 255)])
    whites = whites * np.array(gains)[:bands]
    whites = np.where(levels > 255, np.minimum(tops * np.array(gains)[:bands], 1.0), whites)
    # A band whose clip, white balanced, lies below the others' content was clipped by the cast.
    exposed = (levels <= 255) & (whites >= CAST_CLIP * whites.max())
    evidence = (_clipped_edges(srgb, (stats.small >= levels) & exposed, stats.valid) - CLIP_EDGE_FLOOR) / (
        CLIP_EDGE_FULL - CLIP_EDGE_FLOOR
    )
    if evidence <= 0.0:
        return 0.0
    median = float(np.median(tone))
    darken = max(math.log2(_linear(median) / _linear(BRIGHT_MEDIAN)), 0.0)
    if white.mean() < WHITE_BACKGROUND:
        darken = max(darken, _clipped_tail_ev(stats.hists[exposed], levels[exposed]))
    return round(-min(darken, MAX_DARKEN_EV) * min(evidence, 1.0) * strength, 2) + 0.0


def _clip_levels(stats: _Stats) -> np.ndarray:
    """Each band's clip level (8-bit): where its histogram ends in a spike (``BLOWN`` at most), else 256 (none)."""
    levels = np.full(stats.hists.shape[0], 256)
    for band, hist in enumerate(stats.hists):
        top = int(np.flatnonzero(hist)[-1]) if hist.any() else 0
        below = float(hist[top - 8 : top].mean()) if top >= CLIP_MIN_LEVEL else math.inf
        if hist[top] >= max(CLIP_SPIKE * below, CLIP_MIN_SHARE * stats.count):
            levels[band] = min(top, BLOWN)
    return levels


def _clipped_tail_ev(hists: np.ndarray, levels: np.ndarray) -> float:
    """How far (EV) the clipped content reached past the clip, the median over the bands (at least two).

    A linear gain shifts the histogram along the EV axis and the clip cuts its top off.
    If the cut-off tail tapered linearly to zero, as a photo's highlights do towards
    its white point, it spans ``2 × clipped share / density just below the clip`` EV:
    the darkening that puts that white point back at 1.0. A band that is not clipped
    contributes about zero. An exposure error clips every band that has bright content,
    a colour cast one: with one band clipped, no estimate (0). A photo whose content
    never reached white is underestimated (the median estimate covers it).
    """
    if len(levels) < 2:
        return 0.0
    with np.errstate(divide="ignore"):
        ev = np.log2(_LINEAR_LEVELS)
    spans = []
    for hist, level in zip(hists, levels, strict=True):
        total = hist.sum()
        if level > 255:
            spans.append(0.0)
            continue
        clipped = hist[level:].sum() / total if total else 0.0
        band = (ev < ev[level]) & (ev >= ev[level] - TAIL_BAND_EV)
        density = hist[band].sum() / total / TAIL_BAND_EV if total else 0.0
        spans.append(min(2.0 * clipped / density, MAX_DARKEN_EV) if density > 0 else MAX_DARKEN_EV * (clipped > 0))
    return float(np.median(spans))


def _clipped_edges(srgb: np.ndarray, clipped: np.ndarray, valid: np.ndarray) -> float:
    """The share of (half-size) pixels that are clipped and touch an unclipped detailed one.

    That is where over-exposure cut into the content; a clipped backdrop or sky borders
    only smooth tones, and a clean photo's few specular highlights are small. ``clipped``
    marks, per band, the pixels at their band's clip level.
    """
    if min(srgb.shape[:2]) >= 2 * MIN_SIDE:
        srgb, valid = _halve(srgb), _halve(valid.astype(np.float64)) == 1.0
        clipped = _halve(clipped.astype(np.float64)) == 1.0
    luma = srgb @ _LUMA if srgb.shape[2] == 3 else srgb[:, :, 0]
    step = np.maximum(
        np.abs(np.diff(luma, axis=1, append=luma[:, -1:])), np.abs(np.diff(luma, axis=0, append=luma[-1:]))
    )
    clipped = _channel_max(clipped)
    detail = (step >= TEXTURE) & ~clipped
    touches = np.zeros_like(clipped)
    touches[1:] |= detail[:-1]
    touches[:-1] |= detail[1:]
    touches[:, 1:] |= detail[:, :-1]
    touches[:, :-1] |= detail[:, 1:]
    return float((clipped & touches)[valid].mean()) if valid.any() else 0.0


def _extremes(stats: _Stats, tone: _Tone, quantile: float) -> tuple[float, float]:
    """The darkest and brightest channel level (0..1) after ``tone``, at ``quantile`` from each end.

    Noise widens a histogram: each end is first moved inwards by ``NOISE_TAIL`` × the
    measured σ, so that a noisy image is not judged to have deeper blacks and brighter
    whites than its content has.
    """
    tail = NOISE_TAIL * stats.noise / 255.0
    curves = tone.curves(stats.hists.shape[0])
    lows, highs = [], []
    for hist, curve in zip(stats.hists, curves, strict=True):
        low, high = _quantile(hist, quantile) + tail, _quantile(hist, 1.0 - quantile) - tail
        if low > high:
            low = high = (low + high) / 2
        lows.append(float(np.interp(low, _LEVELS, curve)))
        highs.append(float(np.interp(high, _LEVELS, curve)))
    return min(lows), max(highs)


def _levels(stats: _Stats, tone: _Tone, slope: float | None, strength: float) -> _Tone:
    """Add the levels map: ``slope`` given, or decided from the measured range.

    The pivot divides 0..1 as the measured black and white points divide their gaps to
    the ends, so both ends move towards 0 and 1 in proportion and neither clips first.
    """
    black, white = _extremes(stats, tone, LEVELS_QUANTILE)
    spread = white - black
    if slope is None:
        if spread < FLAT_SPREAD:
            return tone
        excess = max(-math.log(spread) - CONTRAST_DEAD_ZONE, 0.0)
        onset = excess < CONTRAST_ONSET
        shortfall = excess * excess / (2 * CONTRAST_ONSET) if onset else excess - CONTRAST_ONSET / 2
        full = math.log(FULL_SPREAD / spread)
        shortfall += (full - shortfall) * _ramp(excess, CONTRAST_ONSET, CONTRAST_FULL)
        slope = round(min(math.exp(shortfall * strength), MAX_CONTRAST), 2)
    if slope == 1.0:
        return tone
    gaps = black + 1.0 - white
    pivot = black / gaps if gaps > 0.0 else 0.5
    return _Tone(tone.gains, tone.ev, pivot, slope, tone.levels_first, tone.neutral_white)


def _has_white(stats: _Stats) -> bool:
    """Whether at least ``CLIP_MIN_SHARE`` of the pixels are pure white (``WHITE``), clipped in every band.

    Only those are kept neutral through the gains (``_Tone.neutral_white``). Without
    them, a band at its top was clipped by a colour cast alone, the other bands say what
    the pixel was, and pulling that band to white would only put the cast back.
    """
    white = (_channel_min(stats.small) >= WHITE)[stats.valid]
    return white.size > 0 and float(white.mean()) >= CLIP_MIN_SHARE


def _dehazed(stats: _Stats, tone: _Tone) -> _Stats:
    """``stats`` as they would be measured after ``tone``'s levels map (the one that goes first)."""
    table = _to_table(tone.levels(_LEVELS))
    hists = np.zeros_like(stats.hists)
    for band, hist in enumerate(stats.hists):
        np.add.at(hists[band], table, hist)
    small = table[stats.small].astype(np.uint8)
    return _Stats(small=small, valid=stats.valid, hists=hists, count=stats.count, noise=stats.noise * tone.slope)


def _auto_saturation(stats: _Stats, tone: _Tone, strength: float) -> float:
    if stats.small.shape[2] != 3:
        return 1.0
    toned = _toned(stats, tone)
    chroma = (_channel_max(toned) - _channel_min(toned))[stats.valid]
    p90 = float(np.percentile(chroma, 90))
    if not GRAY_CHROMA < p90 < DULL_CHROMA:
        return 1.0
    return round(min(DULL_CHROMA / p90, MAX_SATURATION) ** strength, 2)


def _tiles(size: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """A fixed grid of up to ``TILES``² full-resolution boxes spread over the image."""
    width, height = size
    if width <= TILE * TILES and height <= TILE * TILES:
        return [(0, 0, width, height)]
    xs = np.linspace(0, max(width - TILE, 0), TILES).astype(int)
    ys = np.linspace(0, max(height - TILE, 0), TILES).astype(int)
    return [(int(x), int(y), int(x) + min(TILE, width), int(y) + min(TILE, height)) for y in ys for x in xs]


def _block_sigmas(plane: np.ndarray) -> np.ndarray:
    """Immerkær's noise σ per ``BLOCK``² block, skipping blocks near black or white (clipped)."""
    p = plane.astype(np.float32)
    if min(p.shape) < BLOCK + 2:
        return np.empty(0)
    lap = (
        p[:-2, :-2] + p[:-2, 2:] + p[2:, :-2] + p[2:, 2:]
        - 2 * (p[:-2, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:] + p[2:, 1:-1])
        + 4 * p[1:-1, 1:-1]
    )  # fmt: skip
    rows, cols = lap.shape[0] // BLOCK, lap.shape[1] // BLOCK
    shape = (rows, BLOCK, cols, BLOCK)
    sigma = np.abs(lap[: rows * BLOCK, : cols * BLOCK]).reshape(shape).mean(axis=(1, 3))
    sigma *= math.sqrt(math.pi / 2) / 6
    mean = p[1 : 1 + rows * BLOCK, 1 : 1 + cols * BLOCK].reshape(shape).mean(axis=(1, 3))
    return sigma[(mean > 8) & (mean < 247)].ravel()


def _noise(tiles: list[Image.Image]) -> tuple[float, float]:
    """Luma and chroma noise σ in 8-bit levels, from the flattest blocks of the tiles."""
    luma: list[np.ndarray] = []
    chroma: list[np.ndarray] = []
    for tile in tiles:
        if tile.mode == "L":
            luma.append(_block_sigmas(np.asarray(tile)))
            continue
        y, cb, cr = (np.asarray(band) for band in tile.convert("YCbCr").split())
        luma.append(_block_sigmas(y))
        chroma.extend((_block_sigmas(cb), _block_sigmas(cr)))
    return _low_quantile(luma), _low_quantile(chroma)


def _low_quantile(sigmas: list[np.ndarray]) -> float:
    values = np.concatenate(sigmas) if sigmas else np.empty(0)
    return float(np.percentile(values, NOISE_QUANTILE)) if values.size else 0.0


def _softness(tiles: list[Image.Image], sigma: float) -> float:
    """How much of the fine detail a sharp photo would have is missing (0 = none).

    Natural images have about as much energy in the finest octave as in the next one;
    a soft one has less. The ratio is taken over the busiest blocks, after removing
    the share of the fine band that the measured noise explains.
    """
    fine: list[float] = []
    mid: list[float] = []
    for tile in tiles:
        y = tile.convert("L")
        lp1 = _low_pass(y)
        lp2 = _low_pass(lp1, 4)
        f = np.asarray(y, dtype=np.float32) - np.asarray(lp1, dtype=np.float32)
        m = np.asarray(lp1, dtype=np.float32) - np.asarray(lp2, dtype=np.float32)
        fine.append(float(np.mean(f**2)))
        mid.append(float(np.mean(m**2)))
    order = np.argsort(mid)[len(mid) // 2 :]  # the busier half of the tiles
    f2 = max(float(np.mean(np.take(fine, order))) - 0.8 * sigma**2, 0.0)
    m2 = float(np.mean(np.take(mid, order)))
    if m2 <= 1.0:
        return 0.0
    return max(SHARPEN_TARGET - math.sqrt(f2 / m2), 0.0)


# --- detail filters ------------------------------------------------------------------


def _low_pass(plane: Image.Image, factor: int = 2) -> Image.Image:
    """Box-reduce then bilinear-enlarge: a cheap ~``factor``-pixel blur (Pillow, 8-bit)."""
    return plane.reduce(factor).resize(plane.size, Image.Resampling.BILINEAR)


def _correction_table(denoise: float, sharpen: float, amount: float) -> list[int]:
    """What to subtract from a pixel, +128, for each fine-band value -128..127, +128.

    A swing ``d`` keeps the Wiener-like share ``d²/(d²+t²)`` with ``t = denoise``:
    noise-sized swings vanish, edges pass. Sharpening adds ``amount`` × the share that
    passes ``t = sharpen`` (so noise is never boosted), capped at ``HALO_LIMIT`` so that
    strong edges get no rims.
    """
    d = np.arange(-128, 128, dtype=np.float64)
    kept = d**3 / (d * d + denoise * denoise) if denoise > 0 else d
    boosted = d**3 / (d * d + sharpen * sharpen) if sharpen > 0 else d
    boost = np.clip(boosted * amount, -HALO_LIMIT, HALO_LIMIT)
    return [int(v) for v in np.rint(np.clip(d - kept - boost + 128, 0, 255))]


def _core(plane: Image.Image, table: list[int], scale: int = 2) -> Image.Image:
    """``plane`` minus the removed part of its band finer than ``scale`` (see ``_correction_table``)."""
    band = ImageChops.subtract(plane, _low_pass(plane, scale), 1.0, 128)
    return ImageChops.subtract(plane, band.point(table), 1.0, 128)


@dataclass(frozen=True)
class _Detail:
    """What the detail step does: denoise σs (luma, chroma; 0 = none), sharpening amount,
    and the measured luma σ below which swings are never sharpened (noise)."""

    denoise: Sigmas
    amount: float
    noise: float


def _tone_image(img: Image.Image, tone: _Tone, saturation: float) -> Image.Image:
    """``img`` through the tone curves, then saturation (a blend with its own gray)."""
    if not tone.identity:
        img = img.point([int(v) for v in tone.tables(len(img.getbands())).ravel()])
    if saturation != 1.0:
        img = Image.blend(img.convert("L").convert("RGB"), img, saturation)
    return img


def _detail_image(img: Image.Image, detail: _Detail) -> Image.Image:
    """Core the luma (and sharpen it); core the chroma only when it is noisy itself."""
    luma_sigma, chroma_sigma = detail.denoise
    table = _correction_table(luma_sigma * LUMA_CORING, detail.noise * LUMA_CORING, detail.amount)
    if img.mode == "L":
        return _core(img, table)
    if chroma_sigma > 0:
        chroma = _correction_table(chroma_sigma * CHROMA_CORING, 0.0, 0.0)
        y, cb, cr = img.convert("YCbCr").split()
        cb, cr = _core(cb, chroma, CHROMA_SCALE), _core(cr, chroma, CHROMA_SCALE)
        return Image.merge("YCbCr", (_core(y, table), cb, cr)).convert("RGB")
    # The same change to R, G and B changes luma alone: no YCbCr round trip needed.
    y = img.convert("L")
    removed = ImageChops.subtract(y, _low_pass(y), 1.0, 128).point(table)
    return ImageChops.subtract(img, Image.merge("RGB", (removed, removed, removed)), 1.0, 128)


# --- the operation -------------------------------------------------------------------


@dataclass
class _Context:
    """What the steps of one run share. Made per input and never reused.

    ``image`` is, in turn: the decoded first frame, upright, in sRGB working mode without
    alpha (``RGB`` or ``L``), corrected in place by ``_render``, then with its alpha back;
    ``alpha`` holds the split-off transparency (None when opaque). ``stats`` are the
    measurements the tone is decided from; ``tone`` and ``saturation`` the global
    correction (identity by default); ``tiles`` the full-resolution boxes noise is
    measured in; ``detail`` is None when no detail work is needed. ``details`` is what
    the completion event reports.
    """

    data: bytes
    params: EnhanceParams
    limits: Limits
    image: Image.Image = field(init=False)
    alpha: Image.Image | None = None
    exif: bytes = b""
    stats: _Stats = field(init=False)
    tone: _Tone = field(default_factory=_Tone)
    saturation: float = 1.0
    tiles: list[tuple[int, int, int, int]] = field(default_factory=list)
    detail: _Detail | None = None
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
    ctx.image = to_srgb(ctx.image)


def _split_alpha(ctx: _Context) -> None:
    """Transparency is set aside: corrections are for colour, measured on opaque pixels only."""
    if ctx.image.mode != "RGBA":
        return
    ctx.alpha = ctx.image.getchannel("A")
    ctx.image = ctx.image.convert("RGB")


def _measure(ctx: _Context) -> None:
    ctx.tiles = _tiles(ctx.image.size)
    ctx.stats = _measure_image(ctx.image, ctx.alpha, ctx.tiles)


def _plan_tone(ctx: _Context) -> None:
    """Decide white balance, then exposure on the balanced image, then contrast on the
    exposed one, then saturation: each measurement sees the corrections before it.

    Lifted blacks (``FLARE_BLACK``) were added last, so there contrast is decided, and
    applied, first: white balance and exposure are measured on the stretched image."""
    p, stats, details = ctx.params, ctx.stats, ctx.details
    colour = stats.small.shape[2] == 3
    measurable = min(stats.count, int(stats.valid.sum())) >= MIN_PIXELS
    levels = p.contrast != "off" and (isinstance(p.contrast, float) or measurable)
    slope = p.contrast if isinstance(p.contrast, float) else None

    tone = _Tone()
    if levels and _extremes(stats, tone, LEVELS_QUANTILE)[0] >= FLARE_BLACK:
        first = _levels(stats, _Tone(levels_first=True), slope, p.strength)
        if first.slope != 1.0:
            tone, stats = first, _dehazed(stats, first)

    gains: Gains = (1.0, 1.0, 1.0)
    if not colour or p.white_balance == "off":
        details["wb_gains"] = "off"
    else:
        if isinstance(p.white_balance, tuple):
            gains = p.white_balance
        elif measurable:
            gains = _auto_gains(stats, p.strength)
        details["wb_gains"] = "+".join(f"{g:.2f}" for g in gains)

    ev = 0.0
    if p.exposure == "off":
        details["exposure_ev"] = "off"
    else:
        if isinstance(p.exposure, float):
            ev = p.exposure
        elif measurable:
            ev = _auto_ev(stats, gains, p.strength)
        details["exposure_ev"] = f"{ev:+.2f}"
    tone = _Tone(gains, ev, tone.pivot, tone.slope, tone.levels_first, _has_white(ctx.stats))

    if p.contrast == "off":
        details["contrast"] = "off"
    else:
        if levels and not tone.levels_first:
            tone = _levels(stats, tone, slope, p.strength)
        details["contrast"] = f"{tone.slope:.2f}"
    ctx.tone = tone
    stats = ctx.stats

    if not colour or p.saturation == "off":
        details["saturation"] = "off"
        return
    if isinstance(p.saturation, float):
        ctx.saturation = p.saturation
    elif measurable:
        ctx.saturation = _auto_saturation(stats, tone, p.strength)
    details["saturation"] = f"{ctx.saturation:.2f}"


def _plan_detail(ctx: _Context) -> None:
    """Measure noise after the tone curve (which scales it) and decide denoise and sharpening."""
    p, details = ctx.params, ctx.details
    tiles = [_tone_image(ctx.image.crop(box), ctx.tone, ctx.saturation) for box in ctx.tiles]
    luma, chroma = _noise(tiles)
    details["noise_sigma_before"] = f"{luma:.1f}"
    denoise: Sigmas = (0.0, 0.0)
    if p.denoise == "off":
        details["denoise"] = "off"
    else:
        if isinstance(p.denoise, tuple):
            denoise = p.denoise
        else:
            denoise = (
                round(luma * p.strength, 1) if luma >= NOISE_FLOOR else 0.0,
                round(chroma * p.strength, 1) if chroma >= NOISE_FLOOR else 0.0,
            )
        details["denoise"] = "+".join(f"{sigma:.1f}" for sigma in denoise)
    amount = 0.0
    if p.sharpen == "off":
        details["sharpen"] = "off"
    else:
        if isinstance(p.sharpen, float):
            amount = p.sharpen
        else:
            softness = _softness(tiles, luma)
            softness *= _ramp(softness, SHARPEN_DEAD_ZONE, 2 * SHARPEN_DEAD_ZONE)
            amount = round(min(softness, MAX_AUTO_SHARPEN) * p.strength, 2)
        details["sharpen"] = f"{amount:.2f}"
    if any(denoise) or amount:
        ctx.detail = _Detail(denoise=denoise, amount=amount, noise=luma)


def _render(ctx: _Context) -> None:
    """Tone and detail, a strip at a time, written back into ``ctx.image`` (this run's own).

    Memory stays near one decoded image: temporaries are strip-sized. Each strip is
    worked on with ``STRIP_MARGIN`` rows of its neighbours, so the low-passes see the
    same surroundings as in one piece and no seam shows; the next strip is cut out
    before this one is written back, so its margin is still the input.
    """
    img, tone, saturation, detail = ctx.image, ctx.tone, ctx.saturation, ctx.detail
    if tone.identity and saturation == 1.0 and detail is None:
        ctx.details["noise_sigma_after"] = ctx.details["noise_sigma_before"]
        return

    def cut(top: int) -> tuple[int, Image.Image]:
        upper = max(top - STRIP_MARGIN, 0)
        return upper, img.crop((0, upper, img.width, min(top + STRIP + STRIP_MARGIN, img.height)))

    upper, source = cut(0)
    for top in range(0, img.height, STRIP):
        piece = _tone_image(source, tone, saturation)
        if detail is not None:
            piece = _detail_image(piece, detail)
        rows = min(STRIP, img.height - top)
        offset = top - upper
        if top + STRIP < img.height:
            upper, source = cut(top + STRIP)
        img.paste(piece.crop((0, offset, img.width, offset + rows)), (0, top))
    ctx.details["noise_sigma_after"] = f"{_noise([img.crop(box) for box in ctx.tiles])[0]:.1f}"


def _join_alpha(ctx: _Context) -> None:
    if ctx.alpha is None:
        return
    img = ctx.image.convert("RGB")
    img.putalpha(ctx.alpha)
    ctx.image = img


def _encode(ctx: _Context) -> None:
    p, img = ctx.params, ctx.image
    fmt = format_for(p.format, img)
    encoded = quality.encode_at(img, fmt, p.quality, exif=ctx.exif)
    ctx.details.update(quality.details([encoded]))
    ctx.rendition = Rendition(
        name="enhanced",
        data=encoded.data,
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
    _split_alpha,
    _measure,
    _plan_tone,
    _plan_detail,
    _render,
    _join_alpha,
    _encode,
)


class Enhance:
    """The ``enhance`` operation (see ``processors.operation.Operation``)."""

    name = "enhance"
    version = "7"
    max_batch = 8
    omitted_defaults = quality.OMITTED_DEFAULTS
    """Named in canonical params only with ``quality=auto``."""

    def parse_params(self, raw: Mapping[str, str]) -> EnhanceParams:
        """Parse the parameters; every one is optional.

        ``strength`` (0..1, default 1) scales every automatic amount. Each correction is
        ``auto`` (default), ``off``, or an explicit amount that is applied as given, in
        the units the completion event reports:

        - ``exposure``: EV, -3..3 (``+0.6``). Linear-light gain; brightening rolls the
          highlights off into white, darkening bends them back up to white.
        - ``contrast``: levels slope, 0.25..4 (1 = unchanged), around the pivot that
          moves the measured black and white points towards 0 and 1 in proportion.
        - ``white_balance``: linear-light gains ``R+G+B``, each 0.25..4 (``1.1+1+0.9``).
        - ``saturation``: factor, 0..3 (1 = unchanged).
        - ``denoise``: the noise σ to remove in 8-bit levels, 0..50, for luma and
          chroma alike (``4``) or each (``4+2.5``).
        - ``sharpen``: amount of fine detail added, 0..3 (0.5 = +50%); swings the size of
          the measured noise are never boosted, and no pixel moves by more than 12 levels.

        Output: ``format`` (auto, jpeg, jpg, webp, avif, png; default auto: PNG for
        images with transparency, else JPEG), ``quality`` (1..100 or ``auto`` with
        ``quality_target``, default 90), ``strip`` (``true``/``false``: drop EXIF; default true).
        """
        return EnhanceParams(**params.parse_fields("enhance", raw, _PARSERS))

    def canonical_params(self, params: EnhanceParams) -> dict[str, str]:
        """Every parameter, defaults included, in one spelling (``jpg`` → ``jpeg``, ``+0.50`` → ``0.5``)."""
        return {
            "contrast": _spell(params.contrast),
            "denoise": _spell(params.denoise),
            "exposure": _spell(params.exposure),
            "format": format_name(params.format),
            **quality.canonical(params.quality),
            "saturation": _spell(params.saturation),
            "sharpen": _spell(params.sharpen),
            "strength": _spell(params.strength),
            "strip": str(params.strip).lower(),
            "white_balance": _spell(params.white_balance),
        }

    def plan(self, data: bytes, params: EnhanceParams, limits: Limits) -> dict[str, str]:
        """Nothing but the input and the params decides the bytes."""
        return {}

    def run(self, data: bytes, params: EnhanceParams, limits: Limits) -> StepResult:
        """One rendition, ``enhanced``, the size of the upright input."""
        ctx = _Context(data=data, params=params, limits=limits)
        for step in _STEPS:
            step(ctx)
        return StepResult(renditions=[ctx.rendition], backend="pillow", details=ctx.details)


ENHANCE = Enhance()
