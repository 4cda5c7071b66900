"""Does ``enhance`` repair what it claims to, leave good photos alone, and keep up?

Quality: the real photographs bundled inside scikit-image (read from its package
directory, nothing downloaded) are degraded in known ways — under/over-exposure,
colour casts, low contrast, Gaussian + shot noise and combinations — saved as PNG and
enhanced through ``Enhance.run`` on those bytes, as a worker would (PNG out, so the
numbers measure the corrections, not a codec). Each result is compared with the clean
original by mean CIEDE2000 and SSIM, before vs. after, per degradation and overall (the
mean over all of them); "over-exposed" is both rows with an exposure gain (a linear gain
with the highlights clipped, as a sensor does; a camera's own tone curve would roll them
off instead). The clean originals are enhanced too, and so is a bright photo that is
right as it is (a high-key portrait: the cat on a near-white backdrop that blows out in
the corners), which over-exposure detection must leave alone: their change is the
do-no-harm figure, mean and max. SSIM is compared per image, not only per row.

A second set (``held_out`` in the JSON, the same figures): the same degradations on
bundled colour photographs chosen before any result was seen — matplotlib's Grace Hopper portrait,
scikit-image's immunohistochemistry micrograph (``ihc``), retina fundus photo and the
right view of the motorcycle stereo pair (same scene as the tuning set's left view,
other framing) — each box-reduced to at most 768 px. Whether a repair generalises shows
here; the retina (a scene that is red by nature) and ``ihc`` are hard for any gray-edge
white balance. Versions 6 and 7 were checked against it (the white balance's
plausibility limit, ``processors.enhance.WB_IMPLAUSIBLE``, sits between the retina's
measure and the tuning set's), so it is no longer untouched; hidden sets are the judge.

Speed: a 12-megapixel camera-like JPEG (``streams.dev.samples.photo_jpeg``), JPEG out, on
one core (the process is pinned to one CPU and numeric libraries to one thread), with
default params and with every correction forced on (the slowest path); decode and encode
are included. Peak memory of one default run is measured in a fresh process (Linux) and
given relative to the decoded RGB (width × height × 3 bytes).

    .venv/bin/python benchmarks/enhance.py [--runs 5]

Prints one JSON line on stdout; progress goes to stderr.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import matplotlib  # noqa: E402
import numpy as np  # noqa: E402
import skimage.data  # noqa: E402
from PIL import Image  # noqa: E402
from skimage.color import deltaE_ciede2000, rgb2lab  # noqa: E402
from skimage.metrics import structural_similarity  # noqa: E402

from processors.enhance import ENHANCE  # noqa: E402
from processors.operation import Limits  # noqa: E402
from streams.dev.samples import photo_jpeg  # noqa: E402

PHOTOS = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png")
"""The colour photographs shipped in scikit-image's wheel (no pooch download needed)."""

HELD_OUT = (
    ("matplotlib", "grace_hopper.jpg"),
    ("skimage", "ihc.png"),
    ("skimage", "retina.jpg"),
    ("skimage", "motorcycle_right.png"),
)
"""Colour photographs bundled in matplotlib's and scikit-image's wheels, not in ``PHOTOS``."""
HELD_OUT_SIDE = 768

Degrade = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _linear(srgb: np.ndarray) -> np.ndarray:
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)


def _srgb(lin: np.ndarray) -> np.ndarray:
    lin = np.clip(lin, 0.0, 1.0)
    return np.where(lin <= 0.0031308, lin * 12.92, 1.055 * lin ** (1 / 2.4) - 0.055)


def exposure(ev: float) -> Degrade:
    """A camera exposure error: linear light scaled, highlights clipped."""
    return lambda img, rng: _srgb(_linear(img) * 2.0**ev)


def cast(r: float, g: float, b: float) -> Degrade:
    """A wrong white balance: per-channel gains in linear light."""
    return lambda img, rng: _srgb(_linear(img) * np.array([r, g, b]))


def flat(contrast: float) -> Degrade:
    """A washed-out image: sRGB values squeezed towards the middle."""
    return lambda img, rng: 0.5 + (img - 0.5) * contrast


def noise(gaussian: float, shot: float) -> Degrade:
    """Sensor noise per channel: constant (read) plus signal-dependent (shot), in 8-bit levels at white."""

    def apply(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        sigma = np.sqrt((gaussian / 255) ** 2 + np.clip(img, 0, 1) * (shot / 255) ** 2)
        return img + rng.normal(0.0, 1.0, img.shape) * sigma

    return apply


def chain(*steps: Degrade) -> Degrade:
    def apply(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for step in steps:
            img = step(img, rng)
        return img

    return apply


DEGRADATIONS: dict[str, Degrade] = {
    "under_exposed": exposure(-1.3),
    "over_exposed": exposure(1.0),
    "warm_cast": cast(1.25, 1.0, 0.75),
    "cool_cast": cast(0.8, 1.0, 1.25),
    "low_contrast": flat(0.55),
    "noise": noise(4.0, 12.0),
    "under_exposed+noise": chain(exposure(-1.3), noise(4.0, 12.0)),
    "warm_cast+low_contrast": chain(cast(1.25, 1.0, 0.75), flat(0.6)),
    "over_exposed+cool_cast": chain(exposure(0.7), cast(0.8, 1.0, 1.25)),
    "under_exposed+warm_cast+noise": chain(exposure(-1.0), cast(1.2, 1.0, 0.8), noise(4.0, 12.0)),
}


def photos() -> dict[str, np.ndarray]:
    folder = Path(skimage.data.__file__).parent
    return {name.split(".")[0]: np.asarray(Image.open(folder / name).convert("RGB")) for name in PHOTOS}


def held_out_photos() -> dict[str, np.ndarray]:
    folders = {
        "matplotlib": Path(matplotlib.get_data_path()) / "sample_data",
        "skimage": Path(skimage.data.__file__).parent,
    }
    out = {}
    for package, name in HELD_OUT:
        img = Image.open(folders[package] / name).convert("RGB")
        out[name.split(".")[0]] = np.asarray(img.reduce(max(1, -(-max(img.size) // HELD_OUT_SIDE))))
    return out


def high_key(subject: np.ndarray, side: int = 512) -> np.ndarray:
    """A studio high-key shot: ``subject`` in a soft-edged ellipse on a white backdrop.

    The backdrop brightens from 236 around the subject to 255 in the corners (about 5% of
    the image blown), so the image is bright, partly clipped and correctly exposed.
    """
    yy, xx = np.mgrid[0:side, 0:side] / (side / 2) - 1.0
    backdrop = 236 + 19 * np.clip(np.hypot(yy, xx) / 1.3, 0, 1)
    canvas = np.repeat(backdrop[:, :, None], 3, axis=2)
    width = int(side * 0.7)
    height = width * subject.shape[0] // subject.shape[1]
    small = np.asarray(Image.fromarray(subject).resize((width, height), Image.Resampling.LANCZOS), dtype=np.float64)
    sy, sx = np.mgrid[0:height, 0:width]
    fade = np.clip((1 - np.hypot(sy / (height / 2) - 1, sx / (width / 2) - 1)) / 0.25, 0, 1)[:, :, None]
    top, left = (side - height) // 2, (side - width) // 2
    window = canvas[top : top + height, left : left + width]
    canvas[top : top + height, left : left + width] = fade * small + (1 - fade) * window
    return np.rint(canvas).astype(np.uint8)


def to_png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def enhance(pixels: np.ndarray) -> tuple[np.ndarray, dict[str, str]]:
    params = ENHANCE.parse_params({"format": "png"})
    result = ENHANCE.run(to_png(pixels), params, Limits())
    out = np.asarray(Image.open(io.BytesIO(result.renditions[0].data)).convert("RGB"))
    return out, dict(result.details)


def ciede2000(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(deltaE_ciede2000(rgb2lab(a), rgb2lab(b))))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    return float(structural_similarity(a, b, channel_axis=2, data_range=255))


OVER_EXPOSED = ("over_exposed", "over_exposed+cool_cast")


def _summary(rows: list[dict[str, list[float]]]) -> dict[str, float]:
    before = statistics.fmean(v for row in rows for v in row["ciede2000_before"])
    after = statistics.fmean(v for row in rows for v in row["ciede2000_after"])
    return {
        "ciede2000_before": round(before, 4),
        "ciede2000_after": round(after, 4),
        "ciede2000_reduction": round(1.0 - after / before, 4),
    }


def quality(originals: dict[str, np.ndarray], say: Callable[[str], None], high_key_of: str | None) -> dict[str, Any]:
    """The figures for one set of photos; ``high_key_of`` names the one the high-key portrait is made of."""
    rows: dict[str, dict[str, list[float]]] = {}
    for index, (kind, degrade) in enumerate(DEGRADATIONS.items()):
        row = rows[kind] = {key: [] for key in ("ciede2000_before", "ciede2000_after", "ssim_before", "ssim_after")}
        for photo_index, (name, clean) in enumerate(originals.items()):
            rng = np.random.default_rng(1000 * index + photo_index)
            degraded = np.rint(np.clip(degrade(clean / 255.0, rng), 0, 1) * 255).astype(np.uint8)
            fixed, details = enhance(degraded)
            row["ciede2000_before"].append(ciede2000(clean, degraded))
            row["ciede2000_after"].append(ciede2000(clean, fixed))
            row["ssim_before"].append(ssim(clean, degraded))
            row["ssim_after"].append(ssim(clean, fixed))
            before, after = row["ciede2000_before"][-1], row["ciede2000_after"][-1]
            say(f"{kind:30s} {name:16s} ΔE {before:5.2f} → {after:5.2f}  {details}")
    per_kind = {
        kind: {**{key: round(statistics.fmean(v), 4) for key, v in row.items()}, **_summary([row])}
        for kind, row in rows.items()
    }
    ssim_lower = [
        f"{kind}/{name}"
        for kind, row in rows.items()
        for name, before, after in zip(originals, row["ssim_before"], row["ssim_after"], strict=True)
        if after < before
    ]
    clean_set = dict(originals)
    if high_key_of is not None:
        clean_set[f"{high_key_of}_high_key"] = high_key(originals[high_key_of])
    harm, harm_ssim = {}, []
    for name, clean in clean_set.items():
        fixed, details = enhance(clean)
        harm[name] = round(ciede2000(clean, fixed), 4)
        harm_ssim.append(ssim(clean, fixed))
        say(f"{'clean':30s} {name:16s} ΔE {harm[name]:5.2f}  {details}")
    return {
        "photos": list(originals),
        "degradations": per_kind,
        **_summary(list(rows.values())),
        "over_exposed": _summary([rows[kind] for kind in OVER_EXPOSED]),
        "ssim_never_lower": not ssim_lower,
        "ssim_lower": ssim_lower,
        "do_no_harm": {
            "ciede2000_mean": round(statistics.fmean(harm.values()), 4),
            "ciede2000_max": round(max(harm.values()), 4),
            "ciede2000": harm,
            "ssim_mean": round(statistics.fmean(harm_ssim), 4),
        },
    }


ALL_CORRECTIONS = {
    "exposure": "0.5",
    "white_balance": "1.1+1+0.9",
    "contrast": "1.2",
    "saturation": "1.1",
    "denoise": "4",
    "sharpen": "0.5",
}
"""Every correction forced on, chroma denoise included: the slowest path through ``run``."""


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def _peak_memory(data: bytes) -> int:
    """Peak RSS growth of one run, in bytes, measured in a fresh process.

    Linux keeps a process's RSS high-water mark across fork and exec; writing 5 to
    ``clear_refs`` resets it, so the mark afterwards belongs to this run alone.
    """
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kb("VmRSS")
    ENHANCE.run(data, ENHANCE.parse_params({}), Limits())
    return (_status_kb("VmHWM") - before) * 1024


def _timed(data: bytes, raw: dict[str, str], runs: int, megapixels: float) -> dict[str, Any]:
    params = ENHANCE.parse_params(raw)
    details = dict(ENHANCE.run(data, params, Limits()).details)  # also warms up the codecs
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        ENHANCE.run(data, params, Limits())
        times.append(time.perf_counter() - started)
    median = statistics.median(times)
    return {
        "seconds_median": round(median, 3),
        "seconds_best": round(min(times), 3),
        "megapixels_per_second": round(megapixels / median, 2),
        "details": details,
    }


def speed(runs: int) -> dict[str, Any]:
    width, height = 4000, 3000
    megapixels = width * height / 1e6
    data = photo_jpeg(width, height, seed=7)
    default = _timed(data, {}, runs, megapixels)
    everything = _timed(data, ALL_CORRECTIONS, runs, megapixels)
    peak: int | None = None
    if Path("/proc/self/clear_refs").exists():
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            peak = pool.apply(_peak_memory, (data,))
    return {
        "input": f"{width}x{height} JPEG q90",
        "megapixels": megapixels,
        "threads": 1,
        "default_params": default,
        "all_corrections": {"params": ALL_CORRECTIONS, **everything},
        "peak_memory_mb": None if peak is None else round(peak / 2**20, 1),
        "peak_memory_over_decoded_rgb": None if peak is None else round(peak / (width * height * 3), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5, help="timed runs of the 12 MP JPEG per setting")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    say = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    result = quality(photos(), say, "chelsea")
    result["held_out"] = quality(held_out_photos(), say, None)
    timing = speed(args.runs)
    result["speed"] = timing
    result["targets_met"] = {
        "ciede2000_reduced_65_percent": result["ciede2000_reduction"] >= 0.65,
        "over_exposed_reduced_35_percent": result["over_exposed"]["ciede2000_reduction"] >= 0.35,
        "ssim_never_lower": result["ssim_never_lower"],
        "held_out_over_exposed_reduced_35_percent": result["held_out"]["over_exposed"]["ciede2000_reduction"] >= 0.35,
        "do_no_harm_ciede2000_mean_at_most_1": result["do_no_harm"]["ciede2000_mean"] <= 1.0,
        "do_no_harm_ciede2000_max_at_most_1": result["do_no_harm"]["ciede2000_max"] <= 1.0,
        "under_1s_per_12mp": timing["default_params"]["seconds_median"] < 1.0,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
