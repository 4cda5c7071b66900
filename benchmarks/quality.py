"""``quality=auto`` against ``quality=80``: bytes, SSIMULACRA2 and encode time, per format.

A varied set made here from scikit-image's bundled images (no download): eleven photos
and textures as they come (300–1411 px), four enlarged ones that are soft at the pixel
level as camera photos are (astronaut ×3, coffee ×2.5, hubble ×1.6, and chelsea ×3 with
sensor-like noise of σ 6 added after enlarging, the case where a reduced copy looks
easier than the full image), and two graphics (the colour wheel, the logo on white).
Every image has a short side of at least 300 px: the ``ssimulacra2`` package's own entry
point mis-scores images under about 225 px (see ``processors.quality``), and it is the
independent judge here.

For each of JPEG, WebP and AVIF, each image is encoded at ``quality=80`` and with
``quality=auto`` (``processors.quality.encode_at``, the default target unless
``--target``), in one process pinned to one CPU. Both outputs are then scored at full
size by ``ssimulacra2.compute_ssimulacra2`` on the decoded files, not by the search's
own code. Printed per format: total bytes of each and the saving, mean and lowest
score, how many auto outputs scored under the target, the encode-time ratio auto/fixed
over the set (the search's trial encodes and scores included), the trials used, and
how far the search's score (on the reduced copy) was from the full-size one. Goals:
saving ≥ 20 % at a mean score ≥ quality=80's, none below the target, time ratio ≤ 2.5.

``--frontier`` adds, per format, what a perfect search could do on the same set: every
image is encoded at ``FRONTIER_QUALITIES`` and scored at full size (the package's
computation, through ``processors.quality``'s reference: the same figures to the last
bit, a reference per image), and for each target in ``FRONTIER_TARGETS`` the lowest
quality reaching it is read off each image's curve (bytes and quality interpolated
log-linearly between grid points). It prints each target's saving against
``quality=80`` and its mean score, and the target at which that mean equals
``quality=80``'s with the saving there: the most bytes any per-image "lowest quality
that reaches a target" can save at an equal mean score on this set, whatever the
search costs. It takes several minutes more (AVIF's full-size encodes).

    .venv/bin/python benchmarks/quality.py [--target 70] [--formats jpeg,webp,avif] [--frontier]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import statistics
import time
from typing import Any

import numpy as np
from PIL import Image
from skimage import data

from processors import quality
from processors.image import FORMATS, encode

FIXED = 80
GOAL_SAVING = 0.20
GOAL_TIME_RATIO = 2.5
FRONTIER_QUALITIES = (30, 40, 50, 55, 60, 65, 70, 75, 80, 85, 90, 95, 100)
FRONTIER_TARGETS = (60, 65, 70, 75, 80, 85)


def _rgb(array: Any) -> Image.Image:
    array = np.asarray(array)
    if array.ndim == 2:
        array = np.stack([array] * 3, -1)
    return Image.fromarray(array[..., :3].astype(np.uint8))


def _enlarged(img: Image.Image, factor: float) -> Image.Image:
    return img.resize((round(img.width * factor), round(img.height * factor)), Image.Resampling.LANCZOS)


def photos() -> dict[str, Image.Image]:
    """The set, by name; deterministic (the noise has a fixed seed)."""
    names = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")
    out = {name: _rgb(getattr(data, name)()) for name in names}
    out |= {name: _rgb(getattr(data, name)()) for name in ("camera", "gravel", "brick", "moon", "coins")}
    out["astronaut-x3"] = _enlarged(out["astronaut"], 3)
    out["coffee-x2.5"] = _enlarged(out["coffee"], 2.5)
    out["hubble-x1.6"] = _enlarged(out["hubble_deep_field"], 1.6)
    chelsea = np.asarray(_enlarged(out["chelsea"], 3), dtype=np.float64)
    chelsea += np.random.default_rng(0).normal(0.0, 6.0, (*chelsea.shape[:2], 1))
    out["chelsea-x3-noise"] = Image.fromarray(chelsea.clip(0, 255).round().astype(np.uint8))
    out["colorwheel"] = _rgb(data.colorwheel())
    logo = Image.fromarray(data.logo())
    flat = Image.new("RGB", logo.size, (255, 255, 255))
    flat.paste(logo, mask=logo.getchannel("A"))
    out["logo"] = flat
    return out


def _score(original_png: bytes, encoded: bytes) -> float:
    from ssimulacra2 import compute_ssimulacra2

    return float(compute_ssimulacra2(io.BytesIO(original_png), io.BytesIO(encoded)))


def _timed(fn: Any) -> tuple[Any, float]:
    started = time.process_time()
    result = fn()
    return result, time.process_time() - started


def _format(name: str, images: dict[str, Image.Image], pngs: dict[str, bytes], target: float) -> dict[str, Any]:
    fmt = FORMATS[name]
    auto = quality.AutoQuality(target)
    rows = []
    for image_name, img in images.items():
        fixed, fixed_s = _timed(lambda img=img: encode(img, fmt, quality=FIXED))
        chosen, auto_s = _timed(lambda img=img: quality.encode_at(img, fmt, auto))
        choice = quality.choose(img, fmt, target)  # again, untimed, for the trial count
        rows.append(
            {
                "image": image_name,
                "fixed_bytes": len(fixed),
                "auto_bytes": len(chosen.data),
                "fixed_score": _score(pngs[image_name], fixed),
                "auto_score": _score(pngs[image_name], chosen.data),
                "search_score": chosen.score,
                "quality": chosen.quality,
                "encodes": choice.encodes,
                "reduced": choice.reduced,
                "fixed_s": fixed_s,
                "auto_s": auto_s,
            }
        )
    fixed_bytes = sum(r["fixed_bytes"] for r in rows)
    auto_bytes = sum(r["auto_bytes"] for r in rows)
    fixed_mean = statistics.fmean(r["fixed_score"] for r in rows)
    auto_mean = statistics.fmean(r["auto_score"] for r in rows)
    below = [r["image"] for r in rows if r["auto_score"] < target]
    ratio = sum(r["auto_s"] for r in rows) / sum(r["fixed_s"] for r in rows)
    saving = 1 - auto_bytes / fixed_bytes
    reduced = [r for r in rows if r["reduced"]]
    return {
        "fixed_bytes": fixed_bytes,
        "auto_bytes": auto_bytes,
        "bytes_saved": round(saving, 3),
        "median_image_bytes_ratio": round(statistics.median(r["auto_bytes"] / r["fixed_bytes"] for r in rows), 3),
        "fixed_mean_score": round(fixed_mean, 2),
        "auto_mean_score": round(auto_mean, 2),
        "fixed_min_score": round(min(r["fixed_score"] for r in rows), 2),
        "auto_min_score": round(min(r["auto_score"] for r in rows), 2),
        "fixed_below_target": sum(r["fixed_score"] < target for r in rows),
        "auto_below_target": below,
        "time_ratio": round(ratio, 2),
        "fixed_seconds": round(sum(r["fixed_s"] for r in rows), 2),
        "auto_seconds": round(sum(r["auto_s"] for r in rows), 2),
        "mean_encodes": round(statistics.fmean(r["encodes"] for r in rows), 2),
        "max_encodes": max(r["encodes"] for r in rows),
        "full_minus_search_score": [
            round(min(r["auto_score"] - r["search_score"] for r in reduced), 2),
            round(max(r["auto_score"] - r["search_score"] for r in reduced), 2),
        ]
        if reduced
        else None,
        "qualities": {r["image"]: r["quality"] for r in rows},
        "goals": {
            "saving_20pct": saving >= GOAL_SAVING,
            "mean_score_not_lower": auto_mean >= fixed_mean,
            "none_below_target": not below,
            "time_ratio_2_5": ratio <= GOAL_TIME_RATIO,
        },
    }


def _curve(img: Image.Image, fmt: Any) -> list[tuple[int, int, float]]:
    """(quality, bytes, full-size score) at every ``FRONTIER_QUALITIES``."""
    reference = quality._Reference(np.asarray(img.convert("RGB"), dtype=np.float64))
    curve = []
    for q in FRONTIER_QUALITIES:
        data = encode(img, fmt, quality=q)
        with Image.open(io.BytesIO(data)) as decoded:
            curve.append((q, len(data), reference.score(np.asarray(decoded.convert("RGB"), dtype=np.float64))))
    return curve


def _lowest_reaching(curve: list[tuple[int, int, float]], target: float) -> tuple[float, float]:
    """Bytes and score of the lowest quality on ``curve`` that reaches ``target``, read
    between grid points (the highest quality's when none does)."""
    for (_, low_bytes, low_score), (_, high_bytes, high_score) in itertools.pairwise(curve):
        if low_score >= target:
            return low_bytes, low_score
        if high_score >= target:
            share = (target - low_score) / (high_score - low_score)
            return low_bytes * (high_bytes / low_bytes) ** share, target
    return curve[-1][1], curve[-1][2]


def _frontier(name: str, images: dict[str, Image.Image]) -> dict[str, Any]:
    fmt = FORMATS[name]
    curves = {image_name: _curve(img, fmt) for image_name, img in images.items()}
    fixed = [next((b, s) for q, b, s in curve if q == FIXED) for curve in curves.values()]
    fixed_bytes = sum(b for b, _ in fixed)
    fixed_mean = statistics.fmean(s for _, s in fixed)

    def at(target: float) -> tuple[float, float]:
        chosen = [_lowest_reaching(curve, target) for curve in curves.values()]
        return 1 - sum(b for b, _ in chosen) / fixed_bytes, statistics.fmean(s for _, s in chosen)

    low, high = 30.0, 100.0  # bisection: the mean rises with the target
    for _ in range(40):
        middle = (low + high) / 2
        low, high = (middle, high) if at(middle)[1] < fixed_mean else (low, middle)
    saving_at_equal_mean, _ = at(high)
    return {
        "fixed_mean_score": round(fixed_mean, 2),
        "targets": {
            f"{t:g}": {"saving": round(at(t)[0], 3), "mean_score": round(at(t)[1], 2)} for t in FRONTIER_TARGETS
        },
        "equal_mean_target": round(high, 2),
        "saving_at_equal_mean": round(saving_at_equal_mean, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=quality.DEFAULT_TARGET)
    parser.add_argument("--formats", default="jpeg,webp,avif")
    parser.add_argument("--frontier", action="store_true", help="add what a perfect search could save (minutes)")
    args = parser.parse_args()
    os.sched_setaffinity(0, {0})
    images = photos()
    pngs = {}
    for name, img in images.items():
        buffer = io.BytesIO()
        img.save(buffer, format="PNG", compress_level=1)
        pngs[name] = buffer.getvalue()
    quality.choose(images["coins"], FORMATS["jpeg"], args.target)  # warm: SciPy's import is not an encode
    result: dict[str, Any] = {
        "benchmark": "quality",
        "target": args.target,
        "fixed_quality": FIXED,
        "images": len(images),
        "megapixels": round(sum(img.width * img.height for img in images.values()) / 1e6, 2),
        "search_side": quality.SEARCH_SIDE,
        "search_margin": quality.SEARCH_MARGIN,
    }
    for name in args.formats.split(","):
        result[name] = _format(name, images, pngs, args.target)
        if args.frontier:
            result[name]["frontier"] = _frontier(name, images)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
