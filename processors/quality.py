"""``quality=auto``: the lowest encoder quality whose output still scores a perceptual target.

The score is SSIMULACRA2 (Cloudinary's metric from the JPEG XL project: 100 is lossless,
90 visually lossless in a flicker test, 80 not noticeable side by side, 70 "high quality":
artefacts perceptible but not annoying), computed by the ``ssimulacra2`` package (a NumPy
port; its scores sit within about 1.3 points of libjxl's C++ tool, mostly below it, see
``benchmarks/quality.py``). The package's public call reads two files; ``_Reference``
runs the same computation from its module's own functions but does the original's half
(colour conversion, blurred means and variances at six scales) once per search instead of
once per trial, which is most of a trial's cost saved.

The search (``choose``) runs on the image itself when its long side is at most
``SEARCH_SIDE`` pixels (and then the chosen trial's bytes are the output), else on a
mosaic of four full-resolution tiles (``_reduce``), where it asks for ``target +
SEARCH_MARGIN``, since the tiles predict the whole image's score only within a few
points; it spends at most ``MAX_ENCODES`` trial encodes: the
first at the format's usual quality, then secant steps on the measured scores inside the
bracket found so far. It returns the lowest quality that reached the goal, or the
highest tried when none did. Every step is deterministic (fixed resampling, fixed
encoder options, float64 arithmetic in a fixed order), so the same pixels, format and
target choose the same quality on a replay.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from processors.image import JPEG, PNG, OutputFormat, encode, flatten

if TYPE_CHECKING:
    from numpy.typing import NDArray

DEFAULT_TARGET = 70.0
"""SSIMULACRA2 ``quality=auto`` aims for unless ``quality_target`` says otherwise: "high
quality" on the metric's scale (artefacts perceptible side by side, not annoying)."""
MIN_TARGET = 30.0
MAX_TARGET = 95.0
SEARCH_SIDE = 512
"""Images with a longer side are searched on a mosaic of tiles this size (``_reduce``)."""
SEARCH_MARGIN = 2.0
"""Points above the target the tile mosaic must score (none on the image itself): on
``benchmarks/quality.py`` the full image scored between 1.9 below and 2.8 above the tiles."""
MAX_ENCODES = 4
LOWEST = 20
HIGHEST = 100
_START = {"jpeg": 75, "webp": 75, "avif": 65}
"""First trial per format: about where typical photos reach the default target."""
_SLOPE = 0.6
"""Score points per quality step assumed before two trials give a measured slope."""
_CLOSE = 1.0
"""A passing trial within this many points of the goal ends the search early."""
_GREY = (128, 128, 128)
"""What transparent pixels are seen over when scoring a format with alpha (libjxl's tool
uses mid-grey too)."""


@dataclass(frozen=True)
class AutoQuality:
    """``quality=auto``: search for the lowest quality that scores ``target``."""

    target: float = DEFAULT_TARGET

    def __str__(self) -> str:
        return "auto"


Quality = int | AutoQuality
"""A ``quality`` parameter: a fixed encoder quality 1..100, or auto."""

OMITTED_DEFAULTS = {"quality_target": f"{DEFAULT_TARGET:g}"}
"""For an operation's ``omitted_defaults``: ``canonical`` names the target only with auto."""


def canonical(value: Quality) -> dict[str, str]:
    """``quality`` for canonical params, and ``quality_target`` with auto (it changes the
    bytes), so fixed-quality outputs keep the keys they had before auto existed."""
    if isinstance(value, AutoQuality):
        return {"quality": "auto", "quality_target": f"{value.target:g}"}
    return {"quality": str(value)}


@dataclass(frozen=True, kw_only=True)
class Choice:
    """What ``choose`` settled on: the ``quality``, its ``score`` on the image it searched
    (the reduced copy when ``reduced``), how many trial ``encodes`` it took, and, when it
    searched the image itself, that trial's ``data`` (the output: no second encode)."""

    quality: int
    score: float
    encodes: int
    reduced: bool
    data: bytes | None = None


@dataclass(frozen=True, kw_only=True)
class Encoded:
    """An encoded image and, for ``quality=auto``, the quality chosen and its score."""

    data: bytes
    quality: int | None = None
    score: float | None = None


def encode_at(
    img: Image.Image,
    fmt: OutputFormat,
    quality: Quality,
    *,
    background: tuple[int, int, int] = (255, 255, 255),
    exif: bytes = b"",
) -> Encoded:
    """``processors.image.encode`` with ``quality`` fixed or auto; PNG ignores quality."""
    if isinstance(quality, int) or fmt is PNG:
        fixed = quality if isinstance(quality, int) else HIGHEST
        return Encoded(data=encode(img, fmt, quality=fixed, background=background, exif=exif))
    choice = choose(img, fmt, quality.target, background=background)
    data = choice.data
    if data is None or exif:
        data = encode(img, fmt, quality=choice.quality, background=background, exif=exif)
    return Encoded(data=data, quality=choice.quality, score=choice.score)


def details(encoded: list[Encoded]) -> dict[str, str]:
    """``quality`` and ``ssimulacra2`` for the auto-quality outputs, ``+``-joined in their
    order (one per thumbnail size); nothing when quality was fixed or the format PNG."""
    chosen = [e for e in encoded if e.quality is not None and e.score is not None]
    if not chosen:
        return {}
    return {
        "quality": "+".join(str(e.quality) for e in chosen),
        "ssimulacra2": "+".join(f"{e.score:.2f}" for e in chosen),
    }


def choose(
    img: Image.Image,
    fmt: OutputFormat,
    target: float,
    *,
    background: tuple[int, int, int] = (255, 255, 255),
) -> Choice:
    """The lowest quality in ``LOWEST..HIGHEST`` at which ``img`` encoded as ``fmt``
    scores at least ``target`` (SSIMULACRA2), in at most ``MAX_ENCODES`` trial encodes.

    ``background`` is what a format without alpha flattens transparency onto, as
    ``processors.image.encode`` does. When no trial reaches the goal, the highest
    quality tried is returned with its (lower) score.
    """
    reduced = max(img.size) > SEARCH_SIDE
    probe = _reduce(img) if reduced else img
    goal = target + (SEARCH_MARGIN if reduced else 0.0)
    reference = _Reference(_viewed(probe, fmt, background))
    scores: dict[int, float] = {}
    outputs: dict[int, bytes] = {}

    def trial(quality: int) -> None:
        data = encode(probe, fmt, quality=quality, background=background)
        with Image.open(io.BytesIO(data)) as decoded:
            scores[quality] = reference.score(_viewed(decoded, fmt, background))
        if not reduced:
            outputs[quality] = data

    quality = _START.get(fmt.name, _START[JPEG.name])
    while True:
        trial(quality)
        passing = [q for q, s in scores.items() if s >= goal]
        failing = [q for q, s in scores.items() if s < goal]
        low = max(failing, default=LOWEST - 1)  # highest quality known to fall short
        high = min(passing, default=HIGHEST + 1)  # lowest quality known to reach the goal
        if high - low <= 1 or (high <= HIGHEST and scores[high] - goal < _CLOSE) or len(scores) == MAX_ENCODES:
            break
        last = len(scores) == MAX_ENCODES - 1
        quality = HIGHEST if last and not passing else _next(scores, goal, low, high)  # the last must be able to pass
        if quality in scores:
            break
    passing = [q for q, s in scores.items() if s >= goal]
    chosen = min(passing) if passing else max(scores)
    return Choice(quality=chosen, score=scores[chosen], encodes=len(scores), reduced=reduced, data=outputs.get(chosen))


def _next(scores: dict[int, float], goal: float, low: int, high: int) -> int:
    """The next quality to try, strictly inside ``(low, high)``: a secant step through the
    two trials nearest the goal (a guessed slope while there is one trial), rounded up."""
    nearest = sorted(scores, key=lambda q: (abs(scores[q] - goal), q))[:2]
    if len(nearest) == 2 and abs(nearest[0] - nearest[1]) > 0:
        q1, q2 = nearest
        slope = (scores[q2] - scores[q1]) / (q2 - q1)
    else:
        q1, slope = nearest[0], _SLOPE
    slope = max(slope, 0.1)  # a flat or inverted stretch: step on rather than jump
    guess = math.ceil(q1 + (goal - scores[q1]) / slope)
    return min(max(guess, low + 1), high - 1)


def _reduce(img: Image.Image) -> Image.Image:
    """A ``SEARCH_SIDE`` mosaic of four full-resolution tiles, one from the middle of each
    quadrant, each corner on the 16-pixel grid of JPEG's blocks and macroblocks.

    Tiles, not a shrunk copy: a shrunk copy averages away the noise and softness that
    decide how an image compresses (on ``benchmarks/quality.py`` its score was 10 points
    off the full image's either way); tiles keep them, and four of them sample more of
    the picture than one centre crop.
    """
    half = SEARCH_SIDE // 2
    tile_w, tile_h = min(half, img.width // 2), min(half, img.height // 2)
    mosaic = Image.new(img.mode, (2 * tile_w, 2 * tile_h))
    for row in range(2):
        for col in range(2):
            centre_x = img.width * (2 * col + 1) // 4
            centre_y = img.height * (2 * row + 1) // 4
            left = min(max(0, (centre_x - tile_w // 2) // 16 * 16), img.width - tile_w)
            top = min(max(0, (centre_y - tile_h // 2) // 16 * 16), img.height - tile_h)
            tile = img.crop((left, top, left + tile_w, top + tile_h))
            mosaic.paste(tile, (col * tile_w, row * tile_h))
    return mosaic


def _viewed(img: Image.Image, fmt: OutputFormat, background: tuple[int, int, int]) -> NDArray[np.float64]:
    """The RGB pixels a viewer sees, 0..255: transparency flattened onto ``background``
    for formats without alpha (as the encoder does), onto mid-grey for the others."""
    if img.mode not in ("RGB", "RGBA", "LA", "L"):
        img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
    if img.mode in ("RGBA", "LA"):
        img = flatten(img, background if not fmt.alpha else _GREY)
    return np.asarray(img.convert("RGB"), dtype=np.float64)


class _Reference:
    """The original's half of SSIMULACRA2, computed once; ``score`` adds a distorted image.

    The loop is ``ssimulacra2.compute_ssimulacra2``'s, made of its module's functions, so
    the scores are the package's to the last bit (``tests/processors/test_quality.py``
    checks it). The package is imported here, not at start-up: SciPy costs ~0.2 s.
    """

    def __init__(self, rgb: NDArray[np.float64]) -> None:
        from ssimulacra2 import ssimulacra2 as s2

        self._s2: Any = s2
        self.scales: list[tuple[Any, Any, Any]] = []  # per scale: XYB, its blurred mean, blurred square
        linear = s2.srgb_to_linear(rgb)
        for scale in range(s2.kNumScales):
            if linear.shape[0] < 8 or linear.shape[1] < 8:
                break  # libjxl's test: on the scale before, so the last one may be under 8 pixels
            if scale:
                linear = s2.downsample(linear, 2, 2)
            xyb = s2.make_positive_xyb(s2.linear_rgb_to_xyb(linear))
            self.scales.append((xyb, s2.blur_image(xyb), s2.blur_image(xyb * xyb)))

    def score(self, rgb: NDArray[np.float64]) -> float:
        s2 = self._s2
        msssim = s2.Msssim()
        linear = s2.srgb_to_linear(rgb)
        for scale, (img1, mu1, sigma1_sq) in enumerate(self.scales):
            if scale:
                linear = s2.downsample(linear, 2, 2)
            img2 = s2.make_positive_xyb(s2.linear_rgb_to_xyb(linear))
            result = s2.MsssimScale()
            mu2 = s2.blur_image(img2)
            result.avg_ssim = s2.ssim_map(mu1, mu2, sigma1_sq, s2.blur_image(img2 * img2), s2.blur_image(img1 * img2))
            result.avg_edgediff = s2.edge_diff_map(img1, mu1, img2, mu2)
            msssim.scales.append(result)
        return float(msssim.score())
