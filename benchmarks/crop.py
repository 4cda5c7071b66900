"""Do ``gravity=auto`` cover crops keep the faces and subjects that centre crops cut off?

The labelled set is built here, so every box is known from where it was pasted (nothing
downloaded). Faces come from three bundled sources: scikit-image's ``astronaut`` and
matplotlib's ``grace_hopper`` portraits (their face boxes labelled once by hand, below;
everything else is derived from where they are pasted) and the 100 faces of
scikit-image's ``lfw_subset`` (25×25 grey crops from Labeled Faces in the Wild, brow to
chin: the pasted tile is the face box). Each is pasted, mirrored or not, brightened or
darkened, with more or less contrast, its face 6–40 % of the canvas' short side, with its
centre in the left, middle or right third of the long side and anywhere across the
short side, into canvases 16:9, 2:1, 3:2 wide and 9:16, 2:3, 3:4 tall whose backgrounds
are a mottled wall, a gradient, noise, a texture (brick, grass, gravel) or a photo without
a face (coffee, chelsea, rocket, hubble, ihc, retina, motorcycle), sharp or blurred as
behind a portrait. Every other single-face scene also holds one of the subjects below in
another third, something else to look at. Group scenes hold two or three faces that do
not overlap.
Subject scenes have no face: a silhouette (a horse, a jar, a bottle, a mug, a disc, a
star) textured with a photo or a flat colour, or a photo print, pasted off-centre the
same way on the same backgrounds; its box is the silhouette's. Whole photos without a
face (the same bundled photos and textures, filling the canvas) count only for false
detections.

Each scene is a JPEG q90 that goes through the thumbnail step (``THUMBNAIL.run``, one
size per run: ``fit=cover`` with 1:1, 4:5 and 16:9 boxes) with ``gravity=centre``,
``auto``, ``face`` and ``attention``. The crop window is the one the step places: its
size follows from the output's, its place from the ``focus`` and ``focus_box`` the step
reports, through ``focus.place``. A box counts as kept when it lies fully inside the
window (one source pixel of slack for the rounding of ``focus_box``); subjects also
report the mean share of their area inside. ``faces_kept_from_9pct`` counts only the faces
of 9 % of the short side or more; ``auto_found_face_by_scale`` says, per face height, how
often ``auto`` found the face (1:1 boxes). ``group_ceiling`` is the share of group faces
the best window of that size could hold, ``subject_ceiling`` the share of subjects that
fit the window at all. ``false_faces`` is the share of scenes without a face where the
step found one (``focus=face``). The goal of issue 24: ``auto`` keeps ≥ 95 % of frontal
faces, subjects no worse than ``centre``. Detection time is ``benchmarks/gravity.py``'s
(12 MP, one core); ``mean_run_ms`` here is only what each gravity's runs took on these
2 MP scenes, one core, in this run.

    .venv/bin/python benchmarks/crop.py [--seed 24]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps
from skimage import data

from processors import focus
from processors.focus import Box, Focus
from processors.operation import Limits
from processors.thumbnail import THUMBNAIL

CANVASES: dict[str, tuple[int, int]] = {
    "16:9": (1920, 1080),
    "2:1": (2048, 1024),
    "3:2": (1800, 1200),
    "9:16": (1080, 1920),
    "2:3": (1200, 1800),
    "3:4": (1200, 1600),
}
CROPS: dict[str, str] = {"1:1": "400", "4:5": "400x500", "16:9": "640x360"}
GRAVITIES = ("centre", "auto", "face", "attention")
GOAL = 0.95
FACE_SCALES = (0.06, 0.09, 0.12, 0.16, 0.22, 0.30, 0.40)
"""Face heights as shares of the canvas' short side (the cascade's smallest on the reduced
copy is ``20 / focus.FACE_SHORT_SIDE``; ``focus.CHECK_SIDE`` looks again at what it doubts)."""
FACES_PER_CANVAS = 28
GROUPS_PER_CANVAS = 6
SUBJECTS_PER_CANVAS = 16
SLACK = 1.0
DETECTABLE = 0.09
"""``faces_kept_from_9pct`` counts the faces of 9 % of the short side or more: the cascade's
20-pixel window on a 240-pixel copy is 8.3 %, so smaller ones are kept only by attention."""

ASTRONAUT_FACE = (175.0, 65.0, 275.0, 178.0)
"""Eileen Collins' face in ``data.astronaut()`` (512×512), ear to ear and hairline to chin, by hand."""
GRACE_HOPPER_FACE = (158.0, 150.0, 375.0, 340.0)
"""Grace Hopper's face in matplotlib's ``grace_hopper.jpg`` (512×600), ear to ear and the
cap's brim to the chin, by hand."""
BACKDROPS = ("coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina", "motorcycle")
TEXTURES = ("brick", "grass", "gravel")

Kind = Literal["face", "group", "subject", "photo"]


@dataclass(frozen=True)
class Scene:
    """One labelled image: its JPEG, size and the boxes that should stay in the crop."""

    kind: Kind
    jpeg: bytes
    size: tuple[int, int]
    boxes: tuple[Box, ...]
    scale: float = 0.0
    """The nominal face height (``FACE_SCALES``) or subject height, as a share of the short side."""


@dataclass(frozen=True)
class Portrait:
    """A face source: RGB pixels and the face box in them."""

    name: str
    pixels: np.ndarray
    face: Box


def _grace_hopper() -> np.ndarray:
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("matplotlib's sample data (grace_hopper.jpg) is needed: install the test extras")
    path = Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "sample_data" / "grace_hopper.jpg"
    return np.asarray(Image.open(path).convert("RGB"))


def portraits() -> list[Portrait]:
    """The astronaut, Grace Hopper and the hundred faces of ``lfw_subset``, in that order."""
    out = [
        Portrait("astronaut", data.astronaut(), ASTRONAUT_FACE),
        Portrait("grace_hopper", _grace_hopper(), GRACE_HOPPER_FACE),
    ]
    for i, tile in enumerate(data.lfw_subset()[:100]):  # the first 100 are faces, the rest are not
        grey = (tile * 255).round().astype(np.uint8)
        out.append(Portrait(f"lfw{i}", np.stack([grey] * 3, axis=-1), (0.0, 0.0, 25.0, 25.0)))
    return out


@cache
def _photo(name: str) -> np.ndarray:
    if name == "motorcycle":
        return np.asarray(data.stereo_motorcycle()[0])
    pixels = np.asarray(getattr(data, name)())
    return np.stack([pixels] * 3, axis=-1) if pixels.ndim == 2 else pixels[..., :3]


# --- backgrounds --------------------------------------------------------------------


def _cover(pixels: np.ndarray, size: tuple[int, int]) -> Image.Image:
    return ImageOps.fit(Image.fromarray(pixels).convert("RGB"), size, Image.Resampling.BICUBIC)


def background(rng: np.random.Generator, size: tuple[int, int], i: int) -> Image.Image:
    """The ``i``-th kind of background (in turn): wall, gradient, noise, texture, photo."""
    w, h = size
    kind = i % 5
    if kind == 0:  # a mottled wall
        colour = rng.uniform(60, 200, 3)
        base = rng.normal(0, 6, (max(1, h // 16), max(1, w // 16), 3)) + colour
        return Image.fromarray(base.clip(0, 255).astype(np.uint8)).resize(size, Image.Resampling.BICUBIC)
    if kind == 1:  # a two-colour gradient in some direction
        a, b = rng.uniform(20, 235, 3), rng.uniform(20, 235, 3)
        angle = rng.uniform(0, np.pi)
        ys, xs = np.mgrid[0:h, 0:w]
        t = (xs * np.cos(angle) + ys * np.sin(angle)).astype(np.float32)
        t = (t - t.min()) / max(1.0, float(t.max() - t.min()))
        return Image.fromarray((a + (b - a) * t[..., None]).clip(0, 255).astype(np.uint8))
    if kind == 2:  # blurred noise, medium contrast
        cells = int(rng.integers(8, 64))
        noise = rng.normal(0, rng.uniform(15, 45), (max(1, h // cells), max(1, w // cells), 3)) + rng.uniform(
            70, 180, 3
        )
        return Image.fromarray(noise.clip(0, 255).astype(np.uint8)).resize(size, Image.Resampling.BICUBIC)
    if kind == 3:  # a grey texture, tinted and softened
        tex = np.asarray(getattr(data, TEXTURES[int(rng.integers(len(TEXTURES)))])(), np.float32)
        tex = 128 + (tex - tex.mean()) * rng.uniform(0.3, 0.8)
        tinted = tex[..., None] * rng.uniform(0.7, 1.1, 3) / 1.0
        return _cover(tinted.clip(0, 255).astype(np.uint8), size)
    photo = _cover(_photo(BACKDROPS[int(rng.integers(len(BACKDROPS)))]), size)
    blur = float(rng.choice([0.0, 0.0, 4.0, 10.0]))
    return photo.filter(ImageFilter.GaussianBlur(blur)) if blur else photo


# --- pasting ------------------------------------------------------------------------


def _place_centre(
    rng: np.random.Generator, size: tuple[int, int], box: tuple[float, float], third: int
) -> tuple[float, float]:
    """A centre for a ``box``-sized thing in the ``third``-th third of the long side, anywhere
    across the short side, the whole box inside the canvas."""
    w, h = size
    bw, bh = box
    along = (third + rng.uniform(0.1, 0.9)) / 3
    across = rng.uniform(0.0, 1.0)
    if w >= h:
        cx, cy = along * w, bh / 2 + across * (h - bh)
    else:
        cx, cy = bw / 2 + across * (w - bw), along * h
    return (min(max(cx, bw / 2), w - bw / 2), min(max(cy, bh / 2), h - bh / 2))


def _adjust(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness and contrast as a camera or a lamp would change them."""
    gain, bias = rng.uniform(0.6, 1.3), rng.uniform(-30, 30)
    mean = pixels.mean()
    return ((pixels.astype(np.float32) - mean) * gain + mean + bias).clip(0, 255).astype(np.uint8)


def paste_face(
    canvas: Image.Image, rng: np.random.Generator, source: Portrait, face_height: float, centre: tuple[float, float]
) -> Box:
    """``source`` scaled so its face is ``face_height`` tall, mirrored or not, its face
    centred on ``centre``; the face box in canvas pixels. A portrait is pasted as a
    head-and-shoulders crop, hard-edged or feathered; an LFW tile as it is."""
    pixels = _adjust(source.pixels, rng)
    fl, ft, fr, fb = source.face
    if rng.random() < 0.5:  # mirrored
        pixels = pixels[:, ::-1]
        fl, fr = pixels.shape[1] - fr, pixels.shape[1] - fl
    fw, fh = fr - fl, fb - ft
    if source.name.startswith("lfw"):
        region = (0, 0, pixels.shape[1], pixels.shape[0])
    else:  # head and shoulders
        region = (
            max(0, int(fl - 0.7 * fw)),
            max(0, int(ft - 0.6 * fh)),
            min(pixels.shape[1], int(fr + 0.7 * fw)),
            min(pixels.shape[0], int(fb + 1.6 * fh)),
        )
    s = face_height / fh
    crop = Image.fromarray(pixels).crop(region)
    pasted = crop.resize((max(1, round(crop.width * s)), max(1, round(crop.height * s))), Image.Resampling.LANCZOS)
    sx, sy = pasted.width / crop.width, pasted.height / crop.height
    face = ((fl - region[0]) * sx, (ft - region[1]) * sy, (fr - region[0]) * sx, (fb - region[1]) * sy)
    at = (round(centre[0] - (face[0] + face[2]) / 2), round(centre[1] - (face[1] + face[3]) / 2))
    mask = None
    if not source.name.startswith("lfw") and rng.random() < 0.5:  # feathered: a cut-out rather than a print
        mask = Image.new("L", pasted.size, 0)
        ImageDraw.Draw(mask).ellipse((0, 0, pasted.width - 1, pasted.height * 1.3), fill=255)
        mask = mask.filter(ImageFilter.GaussianBlur(max(1.0, pasted.width / 30)))
    canvas.paste(pasted, at, mask)
    return (at[0] + face[0], at[1] + face[1], at[0] + face[2], at[1] + face[3])


def _star(d: ImageDraw.ImageDraw, w: int, h: int) -> None:
    angles = np.linspace(-np.pi / 2, 1.5 * np.pi, 11)[:-1]
    radii = np.where(np.arange(10) % 2 == 0, 0.5, 0.22)
    d.polygon(
        [(w / 2 + r * w * np.cos(a), h / 2 + r * h * np.sin(a)) for a, r in zip(angles, radii, strict=True)], fill=255
    )


def _jar(d: ImageDraw.ImageDraw, w: int, h: int) -> None:
    d.rounded_rectangle((0.1 * w, 0.15 * h, 0.9 * w, h - 1), radius=0.15 * w, fill=255)
    d.rectangle((0.25 * w, 0, 0.75 * w, 0.2 * h), fill=255)


def _bottle(d: ImageDraw.ImageDraw, w: int, h: int) -> None:
    d.rounded_rectangle((0.05 * w, 0.35 * h, 0.95 * w, h - 1), radius=0.2 * w, fill=255)
    d.polygon([(0.05 * w, 0.45 * h), (0.35 * w, 0.15 * h), (0.65 * w, 0.15 * h), (0.95 * w, 0.45 * h)], fill=255)
    d.rectangle((0.35 * w, 0, 0.65 * w, 0.2 * h), fill=255)


def _mug(d: ImageDraw.ImageDraw, w: int, h: int) -> None:
    d.ellipse((0.55 * w, 0.2 * h, w - 1, 0.8 * h), fill=255)
    d.ellipse((0.68 * w, 0.35 * h, 0.9 * w, 0.65 * h), fill=0)
    d.rounded_rectangle((0, 0, 0.75 * w, h - 1), radius=0.08 * w, fill=255)


def _disc(d: ImageDraw.ImageDraw, w: int, h: int) -> None:
    d.ellipse((0, 0, w - 1, h - 1), fill=255)


def _print(d: ImageDraw.ImageDraw, w: int, h: int) -> None:
    d.rectangle((0, 0, w - 1, h - 1), fill=255)


def _horse(w: int, h: int) -> Image.Image:
    silhouette = Image.fromarray(np.where(data.horse(), 0, 255).astype(np.uint8))
    return silhouette.resize((w, h), Image.Resampling.BILINEAR)


SHAPES: dict[str, tuple[Callable[[ImageDraw.ImageDraw, int, int], None] | None, float]] = {
    "horse": (None, 328 / 400),
    "jar": (_jar, 1.3),
    "bottle": (_bottle, 2.2),
    "mug": (_mug, 0.8),
    "disc": (_disc, 1.0),
    "star": (_star, 1.0),
    "print": (_print, 0.75),
}
"""Silhouettes and their height/width ratios (``print``: a photo print, the whole rectangle)."""


def paste_subject(
    canvas: Image.Image, rng: np.random.Generator, shape: str, height: float, third: int, avoid: Box | None = None
) -> Box | None:
    """A textured silhouette ``height`` pixels tall pasted in the ``third``-th third, clear of
    ``avoid``; its box (of the mask), None when there was no room."""
    draw, aspect = SHAPES[shape]
    h = max(8, round(height))
    w = max(8, round(h / aspect))
    if draw is None:
        mask = _horse(w, h)
    else:
        mask = Image.new("L", (w, h), 0)
        draw(ImageDraw.Draw(mask), w, h)
    photo = _photo(BACKDROPS[int(rng.integers(len(BACKDROPS)))])
    if shape == "print" or rng.random() < 0.7:  # textured with a photo, shaded
        ph, pw = photo.shape[:2]
        cw, ch = int(pw * rng.uniform(0.3, 0.8)), int(ph * rng.uniform(0.3, 0.8))
        x, y = int(rng.integers(0, pw - cw + 1)), int(rng.integers(0, ph - ch + 1))
        tex = np.asarray(Image.fromarray(photo[y : y + ch, x : x + cw]).resize((w, h)), np.float32)
    else:  # a flat colour, lit from one side
        tex = np.broadcast_to(rng.uniform(20, 235, 3).astype(np.float32), (h, w, 3))
    shade = np.linspace(1.1, 0.75, w, dtype=np.float32)[None, :, None]
    obj = Image.fromarray((tex * shade).clip(0, 255).astype(np.uint8))
    for _ in range(50):
        cx, cy = _place_centre(rng, canvas.size, (w, h), third)
        at = (round(cx - w / 2), round(cy - h / 2))
        if avoid is None or not _overlaps((at[0], at[1], at[0] + w, at[1] + h), avoid, 0.0):
            break
    else:
        return None  # no room: nothing pasted
    canvas.paste(obj, at, mask)
    ys, xs = np.nonzero(np.asarray(mask) >= 128)
    return (at[0] + float(xs.min()), at[1] + float(ys.min()), at[0] + float(xs.max() + 1), at[1] + float(ys.max() + 1))


def _jpeg(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.convert("RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _overlaps(a: Box, b: Box, margin: float) -> bool:
    return a[0] < b[2] + margin and b[0] < a[2] + margin and a[1] < b[3] + margin and b[1] < a[3] + margin


def scenes(seed: int) -> Iterator[Scene]:
    """The labelled set, the same for the same seed."""
    rng = np.random.default_rng(seed)
    faces = portraits()
    n = 0
    for size in CANVASES.values():
        short = min(size)
        for i in range(FACES_PER_CANVAS):
            source = faces[n % len(faces)] if n % 3 else faces[(n // 3) % 2]  # a third are the two portraits
            n += 1
            scale = FACE_SCALES[i % len(FACE_SCALES)]
            fh = scale * short * rng.uniform(0.9, 1.1)
            fw = fh * (source.face[2] - source.face[0]) / (source.face[3] - source.face[1])
            canvas = background(rng, size, i + n)
            box = paste_face(canvas, rng, source, fh, _place_centre(rng, size, (fw, fh), i % 3))
            if i % 2:  # something else to look at, elsewhere: attention alone would pick either
                fw, fh = box[2] - box[0], box[3] - box[1]
                head = (box[0] - 0.7 * fw, box[1] - 0.6 * fh, box[2] + 0.7 * fw, box[3] + 1.6 * fh)
                other = list(SHAPES)[(i // 2) % len(SHAPES)]
                paste_subject(canvas, rng, other, rng.uniform(0.15, 0.4) * short, (i + 1 + i // 2 % 2) % 3, head)
            if i % 4 == 0:  # the whole scene's exposure too
                canvas = Image.fromarray(_adjust(np.asarray(canvas), rng))
            yield Scene("face", _jpeg(canvas), size, (box,), scale)
        for i in range(GROUPS_PER_CANVAS):
            canvas = background(rng, size, i)
            boxes: list[Box] = []
            scale = rng.uniform(0.1, 0.25)
            for k in range(2 + i % 2):
                source = faces[(2 + 7 * n + k) % len(faces)] if k else faces[i % 2]
                fh = scale * short * rng.uniform(0.8, 1.2)
                fw = fh * (source.face[2] - source.face[0]) / (source.face[3] - source.face[1])
                for _ in range(50):  # a place whose head and shoulders cover no other face
                    centre = _place_centre(rng, size, (fw, fh), int(rng.integers(3)))
                    reach = (centre[0] - 1.3 * fw, centre[1] - 1.2 * fh, centre[0] + 1.3 * fw, centre[1] + 2.2 * fh)
                    if not any(_overlaps(reach, b, 0.0) for b in boxes):
                        break
                else:
                    continue
                boxes.append(paste_face(canvas, rng, source, fh, centre))
            n += 1
            yield Scene("group", _jpeg(canvas), size, tuple(boxes), scale)
        for i in range(SUBJECTS_PER_CANVAS):
            shape = list(SHAPES)[i % len(SHAPES)]
            scale = rng.uniform(0.15, 0.5)
            canvas = background(rng, size, i + 2)
            subject = paste_subject(canvas, rng, shape, scale * short, (0, 2, 1)[i % 3])
            assert subject is not None  # nothing to avoid: always placed
            yield Scene("subject", _jpeg(canvas), size, (subject,), scale)
        for name in BACKDROPS + TEXTURES:
            yield Scene("photo", _jpeg(_cover(_photo(name), size)), size, ())


# --- measuring ----------------------------------------------------------------------


def window(scene: Scene, out: tuple[int, int], gravity: str, details: dict[str, str]) -> Box:
    """The source window the step cropped, from the output size and what the step reported."""
    src_w, src_h = scene.size
    scale = max(out[0] / src_w, out[1] / src_h)
    crop = (out[0] / scale, out[1] / scale)
    where = None
    if "focus_box" in details:
        x, y, w, h = (float(v) for v in details["focus_box"].split(","))
        method = details["focus"]
        where = Focus("face" if method == "face" else "attention", (x, y, x + w, y + h))
    return focus.place(scene.size, crop, focus.parse_gravity(gravity), where)


def inside(box: Box, win: Box) -> bool:
    return (
        box[0] >= win[0] - SLACK and box[1] >= win[1] - SLACK and box[2] <= win[2] + SLACK and box[3] <= win[3] + SLACK
    )


def kept_area(box: Box, win: Box) -> float:
    w = max(0.0, min(box[2], win[2]) - max(box[0], win[0]))
    h = max(0.0, min(box[3], win[3]) - max(box[1], win[1]))
    return w * h / ((box[2] - box[0]) * (box[3] - box[1]))


def best_window(boxes: tuple[Box, ...], size: tuple[int, int], crop: tuple[float, float]) -> int:
    """The most of ``boxes`` any ``crop``-sized window inside ``size`` holds whole."""
    lefts = {min(max(v, 0.0), size[0] - crop[0]) for b in boxes for v in (b[0], b[2] - crop[0])}
    tops = {min(max(v, 0.0), size[1] - crop[1]) for b in boxes for v in (b[1], b[3] - crop[1])}
    return max(
        (sum(inside(b, (x, y, x + crop[0], y + crop[1])) for b in boxes) for x in lefts for y in tops), default=0
    )


def _share(hits: list[float]) -> float | None:
    return round(sum(hits) / len(hits), 4) if hits else None


def measure(all_scenes: list[Scene]) -> dict[str, Any]:
    limits = Limits()
    rows: dict[str, Any] = {}
    run_s = dict.fromkeys(GRAVITIES, 0.0)
    runs = 0
    auto_faces_by_scale: dict[str, list[float]] = {}
    for ratio, sizes in CROPS.items():
        rows[ratio] = {}
        for gravity in GRAVITIES:
            params = THUMBNAIL.parse_params({"sizes": sizes, "fit": "cover", "gravity": gravity})
            faces: list[float] = []
            seen: list[float] = []
            group: list[float] = []
            ceiling: list[float] = []
            subject: list[float] = []
            area: list[float] = []
            fits: list[float] = []
            false_faces: list[float] = []
            for scene in all_scenes:
                started = time.perf_counter()
                result = THUMBNAIL.run(scene.jpeg, params, limits)
                run_s[gravity] += time.perf_counter() - started
                runs += gravity == "centre"
                (rendition,) = result.renditions
                details = dict(result.details)
                win = window(scene, (rendition.width, rendition.height), gravity, details)
                found_face = details.get("focus") == "face"
                if scene.kind == "face":
                    faces.append(inside(scene.boxes[0], win))
                    if scene.scale >= DETECTABLE:
                        seen.append(faces[-1])
                    if gravity == "auto" and ratio == "1:1":
                        auto_faces_by_scale.setdefault(f"{scene.scale:.2f}", []).append(found_face)
                elif scene.kind == "group":
                    crop = (win[2] - win[0], win[3] - win[1])
                    group.extend(inside(b, win) for b in scene.boxes)
                    best = best_window(scene.boxes, scene.size, crop)
                    ceiling.extend([1.0] * best + [0.0] * (len(scene.boxes) - best))
                else:
                    false_faces.append(found_face)
                    if scene.kind == "subject":
                        box = scene.boxes[0]
                        subject.append(inside(box, win))
                        area.append(kept_area(box, win))
                        fits.append(box[2] - box[0] <= win[2] - win[0] and box[3] - box[1] <= win[3] - win[1])
            rows[ratio][gravity] = {
                "faces_kept": _share(faces),
                "faces_kept_from_9pct": _share(seen),
                "group_faces_kept": _share(group),
                "group_ceiling": _share(ceiling),
                "subjects_kept": _share(subject),
                "subject_area_kept": _share(area),
                "subject_ceiling": _share(fits),
                "false_faces": _share(false_faces),
            }
    per_run = {g: round(run_s[g] / max(1, runs) * 1000, 1) for g in GRAVITIES}
    by_scale = {k: _share(v) for k, v in sorted(auto_faces_by_scale.items())}
    return {"crops": rows, "mean_run_ms": per_run, "auto_found_face_by_scale": by_scale}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seed", type=int, default=24)
    args = parser.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    cv2.setNumThreads(1)
    all_scenes = list(scenes(args.seed))
    counts = {kind: sum(s.kind == kind for s in all_scenes) for kind in ("face", "group", "subject", "photo")}
    result = measure(all_scenes)
    auto = {ratio: result["crops"][ratio]["auto"] for ratio in CROPS}
    centre = {ratio: result["crops"][ratio]["centre"] for ratio in CROPS}
    print(
        json.dumps(
            {
                "benchmark": "crop",
                "seed": args.seed,
                "face_detector": focus.face_detector(),
                "face_short_side": focus.FACE_SHORT_SIDE,
                "scenes": counts,
                "group_faces": sum(len(s.boxes) for s in all_scenes if s.kind == "group"),
                "canvases": list(CANVASES),
                "crops": {ratio: f"fit=cover,sizes={sizes}" for ratio, sizes in CROPS.items()},
                "goal_faces_kept": GOAL,
                "auto_meets_face_goal": all(auto[r]["faces_kept"] >= GOAL for r in CROPS),
                "auto_subjects_at_least_centre": all(
                    auto[r]["subjects_kept"] >= centre[r]["subjects_kept"] for r in CROPS
                ),
                **result,
            }
        )
    )


if __name__ == "__main__":
    main()
