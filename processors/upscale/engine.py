"""Running a Real-ESRGAN model over an image: backends, tiling plan, fallbacks.

Backends, in the order a request falls through them when one cannot run:

1. ``torch`` — the project's networks with the cached weights. On CUDA in fp16; on a CPU
   with native bf16 (AVX512-BF16 or AMX) in bf16; elsewhere, or with
   ``precision=exact``, in fp32 (bf16 without hardware support is emulated and several
   times *slower* than fp32). Always channels-last, under ``inference_mode``, with
   equal-size tiles stacked into batches.
2. ``ncnn`` — the same network from the ncnn wheel's own files, on the CPU through the
   ``ncnn`` package (no Vulkan needed), in fp32. It needs no prepared weights, so it
   covers a worker whose ``models fetch`` never ran, or whose torch failed to allocate.
3. ``lanczos`` — no model at all: Lanczos resampling plus an unsharp mask.

A backend is skipped (and the reason recorded in the details' ``fallback``) when its
weights or library are missing or it runs out of memory; any other error is a bug and
propagates. Falling through happens only when the request says ``fallback=allow``, or
says nothing and the worker is configured to allow it; otherwise the first backend's
error is raised: ``ModelUnavailable`` (permanent), or ``ProcessingFailed`` (retryable)
for memory.

Models are loaded once per process and shared between threads (forward passes keep no
state on the module); everything about one image lives in local variables.
"""

from __future__ import annotations

import importlib.util
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image, ImageFilter

from processors.errors import ModelUnavailable, ProcessingFailed
from processors.upscale import tiling, weights
from processors.upscale.config import (
    DEFAULT_MODEL,
    FAST_MODEL,
    NET_SCALE,
    PRE_PAD,
    TILE_PAD,
    AlphaMode,
    Precision,
    UpscaleConfig,
)
from processors.upscale.host import read_text, usable_cpus

MIN_CORE = 32
"""The smallest tile core worth running: below it the padding is most of the work."""
MAX_BATCH = 8
NCNN_MEMORY_FACTOR = 4
"""ncnn keeps about 4× the activations torch does per pixel (measured: ~60 KB/px fp32)."""
_RUNTIME_MARGIN = 0.85
"""Share of the remaining memory budget given to activations; the rest absorbs allocator slack."""

SECONDS_PER_MEGAPIXEL: Mapping[tuple[str, str], float] = {
    ("RealESRGAN_x4plus", "cpu-fp32"): 180.0,
    ("RealESRGAN_x4plus", "cpu-bf16"): 50.0,
    ("RealESRGAN_x4plus", "cuda-fp16"): 1.0,
    ("realesr-animevideov3", "cpu-fp32"): 7.5,
    ("realesr-animevideov3", "cpu-bf16"): 1.5,
    ("realesr-animevideov3", "cuda-fp16"): 0.05,
}
"""Seconds per input megapixel of ``model=auto``'s candidates, 2 threads: the CPU figures were
measured on an AVX512-BF16 machine (an AVX2-only CPU is ~3× slower in fp32); the CUDA ones
are rough guesses, not measured. ``auto`` only needs the order of magnitude."""


@dataclass(frozen=True, kw_only=True)
class Job:
    """One image to upscale, in working mode: 8-bit gray ``H×W`` or RGB ``H×W×3`` plus
    optional ``alpha`` (``H×W``). ``size`` is the exact output (width, height)."""

    colour: np.ndarray
    alpha: np.ndarray | None
    alpha_mode: AlphaMode
    size: tuple[int, int]
    model: str
    precision: Precision
    tile: int | None
    fallback: bool


@dataclass(frozen=True, kw_only=True)
class Upscaled:
    """The upscaled image at the requested size and an account of how it was made."""

    image: Image.Image
    backend: str
    details: dict[str, str] = field(default_factory=dict)


# -- the host ------------------------------------------------------------------------
def native_bf16(cpuinfo: str) -> bool:
    """Whether ``/proc/cpuinfo`` lists a bf16 matrix unit (AVX512-BF16 or AMX-BF16)."""
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            return bool(flags & {"avx512_bf16", "amx_bf16"})
    return False


def available_memory(meminfo: str) -> int:
    """``MemAvailable`` from ``/proc/meminfo`` text, in bytes (0 when absent)."""
    for line in meminfo.splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def resident_bytes() -> int:
    """This process's resident memory now (Linux), or 0 where it cannot be read."""
    statm = read_text("/proc/self/statm")
    return int(statm.split()[1]) * os.sysconf("SC_PAGE_SIZE") if statm else 0


@dataclass(frozen=True)
class _Host:
    threads: int
    bf16: bool
    cuda: bool


@cache
def _host() -> _Host:
    """What this machine offers, read once; also sets torch's thread count once."""
    threads = usable_cpus()
    if (omp := os.environ.get("OMP_NUM_THREADS", "").strip()).isdigit():  # a share of the machine (--processes)
        threads = min(threads, max(1, int(omp)))
    torch.set_num_threads(threads)
    return _Host(threads=threads, bf16=native_bf16(read_text("/proc/cpuinfo") or ""), cuda=torch.cuda.is_available())


# -- planning --------------------------------------------------------------------------
@dataclass(frozen=True)
class TilePlan:
    """A tiling decision: the grid of windows and how many of them one forward pass takes."""

    tiles: list[tiling.Tile]
    batch: int


def plan_tiling(
    height: int, width: int, *, window_bytes_per_px: int, budget_bytes: int, requested: int | None
) -> TilePlan | None:
    """The coarsest tiling (least repeated work), and the largest batch, that fit ``budget_bytes``.

    ``requested`` (a ``tile=`` param: the largest core side, 0 = untiled) is honoured as
    given and only the batch is fitted. None when not even ``MIN_CORE`` tiles fit.
    """
    if requested is not None:
        grid: tuple[int, int] | None = (
            (1, 1) if requested == 0 else (math.ceil(height / requested), math.ceil(width / requested))
        )
    else:
        grid = tiling.choose_grid(
            height, width, pad=TILE_PAD, max_window_px=budget_bytes // window_bytes_per_px, min_core=MIN_CORE
        )
    if grid is None:
        return None
    tiles = tiling.plan_tiles(height, width, grid, TILE_PAD)
    per_window = tiles[0].rows.size * tiles[0].cols.size * window_bytes_per_px
    return TilePlan(tiles, max(1, min(len(tiles), MAX_BATCH, budget_bytes // per_window)))


def speed_class(config: UpscaleConfig, precision: Precision) -> str:
    """The ``SECONDS_PER_MEGAPIXEL`` column the torch backend would run in."""
    host = _host()
    if config.device == "cuda" or (config.device == "auto" and host.cuda):
        return "cuda-fp16"
    return "cpu-bf16" if host.bf16 and config.cpu_bf16 and precision == "auto" else "cpu-fp32"


def choose_model(pixels: int, budget_s: float, speed_class: str) -> tuple[str, str]:
    """``model=auto``: the photo model when its estimated time fits the budget, else the fast one.

    Returns the model and the reason, for the step's details.
    """
    best = DEFAULT_MODEL
    estimate = pixels / 1e6 * SECONDS_PER_MEGAPIXEL[(best, speed_class)]
    if estimate <= budget_s:
        return best, f"{best} estimated {estimate:.0f}s within {budget_s:.0f}s"
    return FAST_MODEL, f"{best} estimated {estimate:.0f}s over {budget_s:.0f}s"


# -- backends --------------------------------------------------------------------------
class _OutOfMemory(Exception):
    """A backend could not get the memory for even the smallest tile."""


class _Backend(Protocol):
    name: str
    window_bytes_per_px: int

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """``N×3×h×w`` float32 in 0..1 → ``N×3×4h×4w`` float32."""
        ...

    def details(self) -> dict[str, str]: ...


@dataclass(frozen=True)
class _TorchModel:
    module: torch.nn.Module
    sha256: str


_LOCK = threading.Lock()
_TORCH_MODELS: dict[tuple[Path, str, str, torch.dtype], _TorchModel] = {}
_NCNN_NETS: dict[str, object] = {}


def _torch_model(model_dir: Path, name: str, device: str, dtype: torch.dtype) -> _TorchModel:
    """The model on its device, loaded on first use and then shared by every thread."""
    key = (model_dir, name, device, dtype)
    with _LOCK:
        loaded = _TORCH_MODELS.get(key)
        if loaded is None:
            state, sha256 = weights.load(model_dir, name)
            module = weights.spec_for(name).build()
            module.load_state_dict(state, strict=True)
            module = module.eval().to(device=device, dtype=dtype).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            module.requires_grad_(False)
            loaded = _TORCH_MODELS[key] = _TorchModel(module, sha256)
    return loaded


def torch_target(config: UpscaleConfig, precision: Precision) -> tuple[str, torch.dtype]:
    """The device and dtype the torch backend runs a request on, on this host."""
    host = _host()
    device = "cuda" if config.device == "cuda" or (config.device == "auto" and host.cuda) else "cpu"
    if precision == "exact":
        return device, torch.float32
    if device == "cuda":
        return device, torch.float16
    return device, torch.bfloat16 if host.bf16 and config.cpu_bf16 else torch.float32


def torch_backend_name(device: str, dtype: torch.dtype) -> str:
    return f"torch-{device}-{_DTYPE_NAMES[dtype]}"


class _Torch:
    def __init__(self, config: UpscaleConfig, model: str, precision: Precision) -> None:
        self.device, self.dtype = torch_target(config, precision)
        self.threads = _host().threads
        self.loaded = _torch_model(config.model_dir, model, self.device, self.dtype)
        per_px = weights.spec_for(model).window_bytes_per_px
        # 16-bit activations take half of fp32's memory (CPU bf16 included), so windows can be
        # twice as large; benchmarks/upscale.py's peak RSS checks the budget still holds
        self.window_bytes_per_px = per_px if self.dtype == torch.float32 else per_px // 2
        self.name = torch_backend_name(self.device, self.dtype)

    def forward(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch).to(device=self.device, dtype=self.dtype, memory_format=torch.channels_last)
        try:
            with torch.inference_mode():
                y = self.loaded.module(x)
        except torch.OutOfMemoryError as exc:
            raise _OutOfMemory(str(exc)) from exc
        except RuntimeError as exc:
            if "allocate" in str(exc):
                raise _OutOfMemory(str(exc)) from exc
            raise
        return y.float().cpu().numpy()

    def details(self) -> dict[str, str]:
        return {
            "device": self.device,
            "precision": _DTYPE_NAMES[self.dtype],
            "threads": str(self.threads),
            "model_sha256": self.loaded.sha256,
        }


_DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


class _Ncnn:
    name = "ncnn-cpu-fp32"

    def __init__(self, model: str) -> None:
        try:
            import ncnn  # an optional backend: the package may be absent
        except ImportError as exc:
            raise ModelUnavailable(f"the ncnn package is not installed: {exc}") from exc
        self._ncnn = ncnn
        spec = weights.spec_for(model)
        self.threads = _host().threads
        self.window_bytes_per_px = spec.window_bytes_per_px * NCNN_MEMORY_FACTOR
        with _LOCK:
            net = _NCNN_NETS.get(model)
            if net is None:
                param, bin_path = weights.ncnn_files(spec)
                net = ncnn.Net()
                net.opt.use_vulkan_compute = False
                net.opt.num_threads = self.threads
                # fp32 throughout, so the output matches the torch path's
                net.opt.use_fp16_storage = net.opt.use_fp16_packed = net.opt.use_fp16_arithmetic = False
                net.load_param(str(param))
                net.load_model(str(bin_path))
                _NCNN_NETS[model] = net
        self.net = net
        self.source = f"{weights.NCNN_WHEEL} {spec.ncnn_name}"
        self.sha256 = spec.ncnn_sha256

    def forward(self, batch: np.ndarray) -> np.ndarray:
        outputs = []
        for planes in batch:
            extractor = self.net.create_extractor()  # type: ignore[attr-defined]
            extractor.input("data", self._ncnn.Mat(np.ascontiguousarray(planes)))
            ret, out = extractor.extract("output")
            if ret != 0:
                raise _OutOfMemory(f"ncnn extract returned {ret}")
            outputs.append(np.array(out))
        return np.stack(outputs)

    def details(self) -> dict[str, str]:
        return {
            "device": "cpu",
            "precision": "fp32",
            "threads": str(self.threads),
            "weights": self.source,
            "model_sha256": self.sha256,
        }


# -- running ---------------------------------------------------------------------------
TORCH_TARGETS = (("cpu", torch.float32), ("cpu", torch.bfloat16), ("cuda", torch.float32), ("cuda", torch.float16))
"""What ``torch_target`` can answer: fp32 for ``precision=exact``, else bf16 (CPU) or fp16 (CUDA)."""
BACKENDS = (*(torch_backend_name(device, dtype) for device, dtype in TORCH_TARGETS), _Ncnn.name, "lanczos")
"""Every value an upscale step's ``backend`` can take; the README lists them."""


def _run_planes(
    backend: _Backend, pixels: np.ndarray, requested_tile: int | None, budget: int
) -> tuple[np.ndarray, dict[str, str]]:
    """One learned pass: pre-pad → tiles in batches → quantised 8-bit image at 4×."""
    gray = pixels.ndim == 2
    planes, pad = tiling.pre_pad(tiling.to_planes(pixels), PRE_PAD)
    _, height, width = planes.shape
    plan = plan_tiling(
        height, width, window_bytes_per_px=backend.window_bytes_per_px, budget_bytes=budget, requested=requested_tile
    )
    if plan is None:
        raise _OutOfMemory(f"{budget // 2**20} MiB left for activations is not enough for the smallest tile")
    tiles = plan.tiles
    out_h, out_w = (height - pad) * NET_SCALE, (width - pad) * NET_SCALE
    canvas = np.empty((out_h, out_w) if gray else (out_h, out_w, 3), dtype=np.uint8)
    for group in _batches(tiles, plan.batch):
        outputs = backend.forward(np.stack([tiling.window(planes, t) for t in group]))
        for tile, output in zip(group, outputs, strict=True):
            (rows, cols), (core_rows, core_cols) = tiling.placement(tile, NET_SCALE, out_h, out_w)
            core = tiling.core(output, tile, NET_SCALE)[:, core_rows, core_cols]
            canvas[rows, cols] = tiling.quantise(core, gray=gray)
    first = tiles[0]
    details = {
        "tiles": str(len(tiles)),
        "tile": "none" if len(tiles) == 1 else f"{first.core_cols.size}x{first.core_rows.size}",
        "tile_pad": "0" if len(tiles) == 1 else str(TILE_PAD),
        "window": f"{first.cols.size}x{first.rows.size}",
        "pre_pad": str(pad),
        "batch": str(plan.batch),
    }
    return canvas, details


def _batches(tiles: list[tiling.Tile], size: int) -> Iterator[list[tiling.Tile]]:
    for start in range(0, len(tiles), size):
        yield tiles[start : start + size]


def _activation_budget(config: UpscaleConfig, job: Job, backend: _Backend) -> int:
    """Bytes the network may use now: the worker's budget less what is already resident
    and what the image's own buffers will take, and never more than half of what the
    machine has free (on CUDA: half of the free device memory).

    The buffers are counted as if all alive at once, because memory the activations free
    is not always returned to the system: the 4× canvas (1–3 bytes per pixel), its Pillow
    copy (4; RGBA adds the alpha canvas, its copy and the merged image), the resized
    output and its encoding (~7 per output pixel), and the float input planes.
    """
    if isinstance(backend, _Torch) and backend.device == "cuda":
        free, _total = torch.cuda.mem_get_info()
        return int(free * 0.5)
    height, width = job.colour.shape[:2]
    canvas_px = height * width * NET_SCALE * NET_SCALE
    per_canvas_px = (1 if job.colour.ndim == 2 else 3) + 4 + (6 if job.alpha is not None else 0)
    planes = 3 * (height + PRE_PAD) * (width + PRE_PAD) * 4
    buffers = canvas_px * per_canvas_px + job.size[0] * job.size[1] * 7 + planes
    left = config.memory_budget_bytes - resident_bytes() - buffers
    free = available_memory(read_text("/proc/meminfo") or "") // 2
    return max(0, int(min(left, free or left) * _RUNTIME_MARGIN))


def _learned(config: UpscaleConfig, job: Job, make: Callable[[], _Backend]) -> Upscaled:
    backend = make()
    started = time.perf_counter()
    canvas, details = _run_planes(backend, job.colour, job.tile, _activation_budget(config, job, backend))
    image = Image.fromarray(canvas)
    del canvas
    if job.alpha is not None:
        if job.alpha_mode == "model":
            alpha_canvas, _ = _run_planes(backend, job.alpha, job.tile, _activation_budget(config, job, backend))
            alpha = Image.fromarray(alpha_canvas)
        else:
            alpha = Image.fromarray(job.alpha).resize(image.size, Image.Resampling.BILINEAR)
        image = image.convert("RGBA") if image.mode == "RGB" else image.convert("LA")
        image.putalpha(alpha)
    if image.size != job.size:
        image = resize_bands(image, job.size)
    details.update(backend.details())
    details["net_seconds"] = f"{time.perf_counter() - started:.3f}"
    return Upscaled(image=image, backend=backend.name, details=details)


def resize_bands(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Lanczos to ``size``, each band on its own as the reference does (OpenCV's resize).

    Pillow would premultiply colour by alpha when resizing RGBA; the reference does not,
    and matching it keeps outputs comparable with it.
    """
    if image.mode not in ("RGBA", "LA"):
        return image.resize(size, Image.Resampling.LANCZOS)
    return Image.merge(image.mode, [band.resize(size, Image.Resampling.LANCZOS) for band in image.split()])


UNSHARP = ImageFilter.UnsharpMask(radius=2, percent=60, threshold=2)
"""The classical fallback's sharpening: restores some edge contrast that resampling softens."""


def classical(job: Job) -> Upscaled:
    """Lanczos to the requested size, then an unsharp mask on the colour (not the alpha)."""
    image = Image.fromarray(job.colour).resize(job.size, Image.Resampling.LANCZOS).filter(UNSHARP)
    if job.alpha is not None:
        alpha = Image.fromarray(job.alpha).resize(job.size, Image.Resampling.BILINEAR)
        image = image.convert("RGBA") if image.mode == "RGB" else image.convert("LA")
        image.putalpha(alpha)
    return Upscaled(image=image, backend="lanczos", details={"model": "none", "sharpen": "unsharp r=2 60% t=2"})


def pixel_identity(model: str, backend: str, weights_sha256: str) -> dict[str, str]:
    """What made an upscale's pixels besides its input and params (``StepResult.identity``)."""
    return {"model": model, "backend": backend, "weights_sha256": weights_sha256}


def planned_identity(config: UpscaleConfig, model: str, precision: Precision, *, fallback: bool) -> dict[str, str]:
    """The identity ``upscale`` will report unless a backend fails while it runs: torch when
    the weights are prepared, else (if allowed) ncnn from its wheel, else Lanczos."""
    weights.prepare_local(config.model_dir, model)
    status = weights.status(config.model_dir, model)
    if status.present or not fallback:
        return pixel_identity(model, torch_backend_name(*torch_target(config, precision)), status.sha256)
    if importlib.util.find_spec("ncnn") is not None and weights.ncnn_models_dir() is not None:
        return pixel_identity(model, _Ncnn.name, weights.spec_for(model).ncnn_sha256)
    return pixel_identity("none", "lanczos", "")


def upscale(config: UpscaleConfig, job: Job) -> Upscaled:
    """Run the job on the first backend that can, within what ``job.fallback`` allows."""
    weights.prepare_local(config.model_dir, job.model)
    prepared = weights.announce(config.model_dir, job.model)
    tiers: list[tuple[str, Callable[[], Upscaled]]] = [
        ("torch", lambda: _learned(config, job, lambda: _Torch(config, job.model, job.precision))),
        ("ncnn", lambda: _learned(config, job, lambda: _Ncnn(job.model))),
    ]
    skipped: list[str] = []
    for tier, run in tiers:
        try:
            result = run()
        except (ModelUnavailable, _OutOfMemory, MemoryError) as exc:
            reason = f"{tier}: {exc if str(exc) else type(exc).__name__}"
            if not job.fallback:
                if isinstance(exc, ModelUnavailable):
                    raise
                raise ProcessingFailed(f"upscale ran out of memory and fallback is forbidden ({reason})") from exc
            skipped.append(reason)
            continue
        if skipped:
            result.details["fallback"] = "; ".join(skipped)
        if prepared:
            result.details["prepared"] = prepared
        return result
    result = classical(job)
    result.details["fallback"] = "; ".join(skipped)
    return result
