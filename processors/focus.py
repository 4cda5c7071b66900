"""Where a crop should look: gravity names, face and attention detection, crop placement.

A cover crop keeps a window of the source; ``gravity`` says where it sits. The compass
points and ``centre`` need no pixels. ``face``, ``attention`` and ``auto`` look at
reduced copies of the decoded image (faces: ``FACE_SHORT_SIDE``, 320×240 for a 4:3
photo; attention: ``ATTENTION_SHORT_SIDE``), so the cost does not grow with the source:

- **faces**: OpenCV's frontal-face Haar cascades (Viola–Jones) that opencv-python 4.x
  wheels ship in ``cv2.data.haarcascades`` (pinned in pyproject.toml; 5.x wheels ship no
  cascades, and then face detection reports itself unavailable and ``auto`` goes on to
  attention), in two stages:

  1. ``haarcascade_frontalface_alt2.xml`` searches a grey copy ``FACE_SHORT_SIDE`` pixels
     short; a face needs ``FACE_NEIGHBOURS`` overlapping detections. Its 20-pixel window
     is a twelfth of the short side, but a face that small lies between two rows of the
     2-pixel scan and seldom collects enough of them (75–79 % of the faces of 9–12 % of
     the short side were found, all from 16 %, where OpenCV scans every pixel).
  2. Only when that finds no face, each place where it fired at all (up to
     ``CHECK_MAX``, most detections first) is looked at again in the decoded image, the
     candidate scaled to ``CHECK_SIDE`` pixels, with the other cascade
     (``haarcascade_frontalface_alt.xml``, ``CHECK_NEIGHBOURS``) and in a mirror: a
     frontal face is a face both ways round, a chance pattern of noise or texture seldom
     is. This costs a fraction of a millisecond per candidate where there is no face.

  ``benchmarks/crop.py`` (seed 24): faces of 9–12 % found 96–100 % instead of 75–79 %,
  false faces 3 of 156 scenes instead of 2; ``benchmarks/gravity.py``: within the 30 ms
  a 12-megapixel photo may add on one core.
- **attention**: the spectral residual saliency of Hou & Zhang (CVPR 2007, "Saliency
  Detection: A Spectral Residual Approach"), on a copy 64 pixels wide as in the paper:
  the log amplitude spectrum minus its 3×3 local mean, back with the original phase,
  squared and blurred. The salient region is the one connected part of the map above
  three times its mean (the paper's object threshold) that holds the most saliency.
- **auto**: faces when any is found, else the salient region, else the centre.

The focus is a box in source pixels; each crop window is centred on it and then pushed
back inside the image. Faces are taken largest first while their union still fits the
window, so a group photo keeps as many faces whole as fit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

Gravity = Literal[
    "auto",
    "face",
    "attention",
    "centre",
    "north",
    "south",
    "east",
    "west",
    "northeast",
    "northwest",
    "southeast",
    "southwest",
]
DEFAULT_GRAVITY: Gravity = "centre"

_COMPASS: Mapping[str, tuple[float, float]] = {
    "centre": (0.5, 0.5),
    "north": (0.5, 0.0),
    "south": (0.5, 1.0),
    "east": (1.0, 0.5),
    "west": (0.0, 0.5),
    "northeast": (1.0, 0.0),
    "northwest": (0.0, 0.0),
    "southeast": (1.0, 1.0),
    "southwest": (0.0, 1.0),
}
"""Where the window sits along each axis: 0 = flush left/top, 1 = flush right/bottom."""

_GRAVITIES: Mapping[str, Gravity] = {
    "auto": "auto",
    "face": "face",
    "faces": "face",  # Cloudinary
    "attention": "attention",  # libvips, sharp
    "smart": "attention",  # imgproxy's long name for libvips' smart crop
    "sm": "attention",
    "centre": "centre",
    "center": "centre",
    "ce": "centre",
    "north": "north",
    "no": "north",
    "south": "south",
    "so": "south",
    "east": "east",
    "ea": "east",
    "west": "west",
    "we": "west",
    "northeast": "northeast",
    "north_east": "northeast",  # Cloudinary
    "noea": "northeast",  # imgproxy
    "northwest": "northwest",
    "north_west": "northwest",
    "nowe": "northwest",
    "southeast": "southeast",
    "south_east": "southeast",
    "soea": "southeast",
    "southwest": "southwest",
    "south_west": "southwest",
    "sowe": "southwest",
}

FACE_SHORT_SIDE = 240
FACE_LONG_SIDE = 800
"""The reduced copy faces are searched in: its short side, unless that makes the long
side longer than this. A cover crop is as tall (or wide) as the short side, so the
smallest face found, 20 pixels, is a twelfth of the crop's side; time grows with the area
(a full search of a 360-pixel copy would find the small faces too, in twice the time)."""
ATTENTION_SHORT_SIDE = 200
"""The reduced copy the saliency map is made from (short side; long side ``FACE_LONG_SIDE``
at most): the one faces were searched in before they had their own, so attention crops
kept their bytes when faces moved to a larger copy."""
FACE_CASCADE = "haarcascade_frontalface_alt2.xml"
FACE_SCALE_STEP = 1.25
"""Size ratio between the first stage's search scales: 1.25 rather than OpenCV's usual 1.1-1.2
because the second look recovers what a coarser scan misses, and it costs a quarter less
(``benchmarks/gravity.py``'s still life: about 22 ms instead of 31 ms on one core), with
single faces kept on ``benchmarks/crop.py`` as often as with 1.2 or more often (seeds 24 and 5),
and one to four of the 90 group faces fewer."""
FACE_NEIGHBOURS = 2
"""Overlapping detections a face needs (OpenCV's ``minNeighbors``): more, fewer false faces
and fewer small true ones: with ``alt2``, 3 found a fifth fewer faces of 9–12 % of the short side."""
CHECK_CASCADE = "haarcascade_frontalface_alt.xml"
"""The second look's cascade: another training of the same detector, so that a place both
fire on, both ways round, is more likely a face than one ``alt2`` fired on twice
(``alt2`` here, with 4 or 5 neighbours, found as many faces and a false one more)."""
CHECK_SIDE = 48
"""Pixels the candidate's box is scaled to for the second look: where the cascade's
window is more than twice its 20 pixels, OpenCV scans every pixel instead of every
second, so a face collects four times the detections."""
CHECK_STEP = 1.1
CHECK_SIZES = (0.7, 1.4)
"""Face sizes the second look searches, as shares of ``CHECK_SIDE``: the first stage's
window is within a scale step of the face it fired on."""
CHECK_MARGIN = 0.5
"""Of the candidate's side, on each side of it: room for the face beside the place fired on."""
CHECK_NEIGHBOURS = 3
"""Detections a face needs in the second look (in each of the image and its mirror): 2
let a face into 4 of 156 scenes without one, 3 into 3."""
CHECK_MAX = 8
"""Candidates looked at again, at most: the bound on what the second stage costs."""
SALIENCY_WIDTH = 64
SALIENCY_BLUR = 2.5
"""σ, in saliency-map pixels, of the Gaussian that smooths the map (the paper uses 8 at 64 wide)."""
FLAT = 1.0 / 255
"""Brightness σ below which an image has nothing to look at."""
SALIENCY_THRESHOLD = 3.0
"""Times the mean saliency a pixel must reach to belong to an object (Hou & Zhang)."""

Box = tuple[float, float, float, float]
"""``(left, top, right, bottom)`` in source pixels."""
Rect = tuple[float, float, float, float]
"""``(x, y, width, height)``, as OpenCV gives them, in the pixels of the image searched."""
Hit = tuple[int, int, int, int]
"""One detection of a cascade, ``(x, y, width, height)`` in the searched copy's pixels."""


def parse_gravity(value: str) -> Gravity:
    """A gravity by any of its names (imgproxy's and Cloudinary's spellings included)."""
    gravity = _GRAVITIES.get(value)
    if gravity is None:
        raise ValueError(
            "auto, face, attention, centre (center, ce) or a compass point: north, south, east, west,"
            " northeast, northwest, southeast, southwest (no, so, ea, we, noea, ..., north_east, ...)"
        )
    return gravity


def detects(gravity: Gravity) -> bool:
    """Whether this gravity looks at the pixels."""
    return gravity not in _COMPASS


@dataclass(frozen=True)
class Focus:
    """What a crop is centred on: how it was found and, unless ``centre``, the box."""

    method: Literal["face", "attention", "centre"]
    box: Box | None
    faces: int = 0

    def details(self) -> dict[str, str]:
        """What the step reports: ``focus`` (method), ``focus_box`` (``x,y,w,h``), ``faces``."""
        out = {"focus": self.method, "faces": str(self.faces)}
        if self.box is not None:
            left, top, right, bottom = self.box
            out["focus_box"] = f"{round(left)},{round(top)},{round(right - left)},{round(bottom - top)}"
        return out


def place(source: tuple[int, int], crop: tuple[float, float], gravity: Gravity, focus: Focus | None) -> Box:
    """The crop window of size ``crop`` in a ``source``-sized image, for ``gravity``.

    Compass gravities put the window flush with their edges (``centre`` in the middle);
    detecting ones centre it on ``focus`` (the middle when nothing was found).
    """
    src_w, src_h = source
    crop_w, crop_h = crop
    if not detects(gravity) or focus is None or focus.box is None:
        fx, fy = _COMPASS[gravity] if not detects(gravity) else (0.5, 0.5)
        left, top = (src_w - crop_w) * fx, (src_h - crop_h) * fy
        return (left, top, left + crop_w, top + crop_h)
    cx, cy = _centre(focus.box)
    left = min(max(cx - crop_w / 2, 0.0), src_w - crop_w)
    top = min(max(cy - crop_h / 2, 0.0), src_h - crop_h)
    return (left, top, left + crop_w, top + crop_h)


def fitting(faces: list[Box], crop: tuple[float, float]) -> Box | None:
    """The union of the largest faces that fits in a ``crop``-sized window (the largest
    face alone when even it does not fit); None without faces."""
    ordered = sorted(faces, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]), reverse=True)
    if not ordered:
        return None
    union = ordered[0]
    for face in ordered[1:]:
        grown = (min(union[0], face[0]), min(union[1], face[1]), max(union[2], face[2]), max(union[3], face[3]))
        if grown[2] - grown[0] <= crop[0] and grown[3] - grown[1] <= crop[1]:
            union = grown
    return union


def _centre(box: Box) -> tuple[float, float]:
    return ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)


@dataclass(frozen=True)
class Detection:
    """What one look at the pixels found, in source pixels: every face, and the salient box."""

    faces: list[Box]
    salient: Box | None
    face_detector: bool
    """False when no cascade could be loaded (an OpenCV without its data files)."""

    def focus(self, gravity: Gravity, crop: tuple[float, float]) -> Focus:
        """The focus for one crop size: faces first (``auto``, ``face``), then attention."""
        if gravity in ("auto", "face") and self.faces:
            return Focus("face", fitting(self.faces, crop), len(self.faces))
        if gravity in ("auto", "attention") and self.salient is not None:
            return Focus("attention", self.salient, len(self.faces))
        return Focus("centre", None, len(self.faces))


def detect(image: Image.Image, source: tuple[int, int], gravity: Gravity) -> Detection:
    """Faces and/or the salient region of ``image`` (any decoded size of a ``source``-sized
    upright picture), in source pixels. ``face`` looks for faces only, ``attention`` for
    the salient region only, ``auto`` for faces and then, only when none is found, the
    salient region."""
    work = image if image.mode in ("L", "RGB") else image.convert("RGB")
    faces: list[Box] = []
    cascade = _cascade() if gravity in ("auto", "face") else None
    if cascade is not None:
        grey = work.convert("L")  # grey first: a third of the pixels to shrink, and the checks look at it
        to_source = (source[0] / grey.width, source[1] / grey.height)
        faces = [_to_source(box, to_source) for box in find_faces(cascade, grey)]
    salient = None
    if gravity == "attention" or (gravity == "auto" and not faces):
        gray = reduced(work, ATTENTION_SHORT_SIDE)
        box = salient_box(gray)
        if box is not None:
            fx, fy = source[0] / gray.width, source[1] / gray.height
            salient = (box[0] * fx, box[1] * fy, box[2] * fx, box[3] * fy)
    return Detection(faces=faces, salient=salient, face_detector=cascade is not None)


def reduced(image: Image.Image, short_side: int) -> Image.Image:
    """A grey copy of ``image`` (L or RGB) whose short side is ``short_side``, or whose long
    side is ``FACE_LONG_SIDE`` when that is smaller; never enlarged."""
    scale = min(1.0, short_side / min(image.size), FACE_LONG_SIDE / max(image.size))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return (image.resize(size, Image.Resampling.BOX) if size != image.size else image).convert("L")


def _to_source(box: Rect, to_source: tuple[float, float]) -> Box:
    x, y, w, h = box
    sx, sy = to_source
    return (x * sx, y * sy, (x + w) * sx, (y + h) * sy)


def face_detector() -> str:
    """What finds faces here, as part of an output's identity, or ``none`` where the
    installed OpenCV ships no cascade: ``opencv-4.14.0/<cascade>``, the search
    (``short=<FACE_SHORT_SIDE>,step=<FACE_SCALE_STEP>,neighbours=<FACE_NEIGHBOURS>``) and
    the second look (``check=<CHECK_CASCADE>@<CHECK_SIDE>...``), so
    that retuning it, like another OpenCV, makes new outputs rather than reusing old ones."""
    import cv2

    if _cascade() is None:
        return "none"
    search = f"short={FACE_SHORT_SIDE},step={FACE_SCALE_STEP},neighbours={FACE_NEIGHBOURS}"
    check = (
        f"check={CHECK_CASCADE}@{CHECK_SIDE}x{CHECK_SIZES[0]}-{CHECK_SIZES[1]}+{CHECK_MARGIN},"
        f"step={CHECK_STEP},neighbours={CHECK_NEIGHBOURS},mirrored,max={CHECK_MAX}"
    )
    return f"opencv-{cv2.__version__}/{FACE_CASCADE},{search},{check}"


@cache
def _cascade() -> Any:
    """The frontal-face cascade from the installed OpenCV, or None where it ships none."""
    return _load(FACE_CASCADE)


@cache
def _checker() -> Any:
    """The second look's cascade, or None (then nothing the first stage doubted is kept)."""
    return _load(CHECK_CASCADE)


def _load(name: str) -> Any:
    import cv2

    path = Path(getattr(getattr(cv2, "data", None), "haarcascades", "")) / name
    if not path.is_file():
        return None
    cascade = cv2.CascadeClassifier(str(path))  # type: ignore[attr-defined, unused-ignore]  # not in 5.x stubs
    return None if cascade.empty() else cascade


def find_faces(cascade: Any, grey: Image.Image) -> list[Rect]:
    """The faces in ``grey`` (an L image of any size), in its pixels: the first stage's
    on a reduced copy, or, when it is sure of none, what the second look confirms of the
    places it fired on (see the module's docstring)."""
    scale = min(1.0, FACE_SHORT_SIDE / min(grey.size), FACE_LONG_SIDE / max(grey.size))
    size = (max(1, round(grey.width * scale)), max(1, round(grey.height * scale)))
    copy = grey.resize(size, Image.Resampling.BOX) if size != grey.size else grey
    # no histogram equalisation: on a mostly flat frame it stretches the background and
    # flattens the face (a face composited into a plain canvas was lost that way)
    found = cascade.detectMultiScale(np.asarray(copy), scaleFactor=FACE_SCALE_STEP, minNeighbors=0)
    raw: list[Hit] = [(int(x), int(y), int(w), int(h)) for x, y, w, h in found]
    if not raw:
        return []
    fx, fy = grey.width / copy.width, grey.height / copy.height
    faces, _ = _grouped(raw, FACE_NEIGHBOURS)  # what detectMultiScale(minNeighbors=...) returns
    if faces:
        return [(x * fx, y * fy, w * fx, h * fy) for x, y, w, h in faces]
    checker = _checker()
    if checker is None:
        return []
    places, hits = _grouped(raw + raw, 1)  # doubled: every place, even where it fired once
    order = sorted(range(len(places)), key=lambda i: (-hits[i], places[i]))[:CHECK_MAX]
    confirmed: list[Rect] = []
    for i in order:
        x, y, w, h = places[i]
        for face in _check(checker, grey, ((x + w / 2) * fx, (y + h / 2) * fy, w * fx)):
            if not any(_overlap(face, other) > 0.3 for other in confirmed):
                confirmed.append(face)
    return confirmed


def _grouped(
    rects: list[tuple[int, int, int, int]], threshold: int
) -> tuple[list[tuple[int, int, int, int]], list[int]]:
    """OpenCV's clustering of detections (``groupRectangles``, the ``eps`` of
    ``detectMultiScale``): the clusters of more than ``threshold`` and their sizes."""
    import cv2

    grouped, weights = cv2.groupRectangles(rects, threshold, 0.2)
    rects_out = [(int(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in grouped]
    return rects_out, [int(w) for w in np.asarray(weights).ravel()]


def _check(checker: Any, grey: Image.Image, at: tuple[float, float, float]) -> list[Rect]:
    """The faces the second look finds around ``at`` (centre x, y and side, in ``grey``'s
    pixels), in ``grey``'s pixels: those found in the region and in its mirror."""
    cx, cy, side = at
    reach = (0.5 + CHECK_MARGIN) * side
    left, top = max(0, int(cx - reach)), max(0, int(cy - reach))
    right, bottom = min(grey.width, int(cx + reach)), min(grey.height, int(cy + reach))
    k = CHECK_SIDE / side
    region = grey.crop((left, top, right, bottom))
    size = (max(1, round(region.width * k)), max(1, round(region.height * k)))
    region = region.resize(size, Image.Resampling.BOX if k < 1 else Image.Resampling.BILINEAR)
    pixels = np.asarray(region)
    search = {
        "scaleFactor": CHECK_STEP,
        "minNeighbors": CHECK_NEIGHBOURS,
        "minSize": (int(CHECK_SIDE * CHECK_SIZES[0]),) * 2,
        "maxSize": (int(CHECK_SIDE * CHECK_SIZES[1]),) * 2,
    }
    found = [tuple(float(v) for v in r) for r in checker.detectMultiScale(pixels, **search)]
    if not found:
        return []
    width = pixels.shape[1]
    mirror = [
        (width - float(x) - float(w), float(y), float(w), float(h))
        for x, y, w, h in checker.detectMultiScale(np.ascontiguousarray(pixels[:, ::-1]), **search)
    ]
    kx, ky = region.width / (right - left), region.height / (bottom - top)
    return [
        (left + x / kx, top + y / ky, w / kx, h / ky)
        for x, y, w, h in found
        if any(_overlap((x, y, w, h), other) > 0.5 for other in mirror)
    ]


def _overlap(a: Rect, b: Rect) -> float:
    """Intersection over union of two ``(x, y, w, h)``."""
    w = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return w * h / (a[2] * a[3] + b[2] * b[3] - w * h)


def saliency(gray: Image.Image) -> np.ndarray:
    """Hou & Zhang's spectral residual saliency of ``gray`` at ``SALIENCY_WIDTH`` columns."""
    import cv2

    width = min(SALIENCY_WIDTH, gray.width)
    height = max(1, round(gray.height * width / gray.width))
    small = np.asarray(gray.resize((width, height), Image.Resampling.BOX), dtype=np.float64) / 255.0
    if small.std() < FLAT:
        return np.zeros_like(small)  # no structure: the residual of nothing is a ringing delta
    spectrum = np.fft.fft2(small)
    log_amplitude = np.log(np.abs(spectrum) + 1e-9)
    phase = np.angle(spectrum)
    padded = np.pad(log_amplitude, 1, mode="wrap")  # the spectrum is periodic
    local_mean = sum(padded[i : i + height, j : j + width] for i in range(3) for j in range(3)) / 9.0
    rebuilt = np.exp(log_amplitude - local_mean + 1j * phase)
    rebuilt[0, 0] = 0.0  # the mean brightness is nobody's subject: without it the map is not a flat offset
    saliency_map = np.abs(np.fft.ifft2(rebuilt)) ** 2
    return np.asarray(cv2.GaussianBlur(saliency_map, (0, 0), SALIENCY_BLUR), dtype=np.float64)


def salient_box(gray: Image.Image) -> tuple[float, float, float, float] | None:
    """The box, in ``gray``'s pixels, of the most salient object; None for a flat image."""
    import cv2

    smap = saliency(gray)
    mean = float(smap.mean())
    if not mean > 0.0:
        return None
    mask = (smap > SALIENCY_THRESHOLD * mean).astype(np.uint8)
    count, labels = cv2.connectedComponents(mask, connectivity=8)
    if count < 2:
        return None
    mass = np.bincount(labels.ravel(), weights=smap.ravel(), minlength=count)
    best = int(np.argmax(mass[1:])) + 1
    ys, xs = np.nonzero(labels == best)
    fx, fy = gray.width / smap.shape[1], gray.height / smap.shape[0]
    return (float(xs.min()) * fx, float(ys.min()) * fy, float(xs.max() + 1) * fx, float(ys.max() + 1) * fy)
