"""The reference implementation, ``realesrgan``'s ``RealESRGANer``, importable on CPU-only torch.

For tests and benchmarks only: the production path never imports torchvision, basicsr or
realesrgan. Two incompatibilities stand in the way, both fixed here and nowhere else:

- the PyPI torchvision 0.28.0 is a CUDA build; on CPU torch its import fails with
  "operator torchvision::nms does not exist" because its fake-tensor registrations need
  the ``nms``/``qnms`` operator schemas, which its missing C++ extension would define.
  Defining the two schemas in a ``torchvision`` library fragment first lets it import
  (nothing here calls them);
- basicsr 1.4.2 imports ``torchvision.transforms.functional_tensor``, which torchvision
  renamed to ``_functional_tensor``; an alias in ``sys.modules`` restores the old name.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

_FRAGMENT: torch.library.Library | None = None
"""Kept alive for the process: dropping the Library object would unregister the schemas."""


def _prepare_torchvision() -> None:
    global _FRAGMENT
    if _FRAGMENT is None:
        _FRAGMENT = torch.library.Library("torchvision", "FRAGMENT")
        _FRAGMENT.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _FRAGMENT.define("qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        import torchvision.transforms._functional_tensor as functional_tensor

    sys.modules.setdefault("torchvision.transforms.functional_tensor", functional_tensor)


def reference_upsampler(model: str, weights_pth: Path, *, tile: int = 0, pre_pad: int = 10) -> Any:
    """A ``RealESRGANer`` (fp32, CPU) with basicsr's own network for ``model``."""
    _prepare_torchvision()
    with warnings.catch_warnings():
        # basicsr and its dependencies use deprecated scipy/torchvision names; not ours to fix
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        from basicsr.archs.rrdbnet_arch import RRDBNet
        from realesrgan import RealESRGANer
        from realesrgan.archs.srvgg_arch import SRVGGNetCompact

    networks = {
        "RealESRGAN_x4plus": lambda: RRDBNet(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=23, num_grow_ch=32),
        "RealESRGAN_x4plus_anime_6B": lambda: RRDBNet(
            num_in_ch=3, num_out_ch=3, num_feat=64, num_block=6, num_grow_ch=32
        ),
        "realesr-animevideov3": lambda: SRVGGNetCompact(
            num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=16, upscale=4, act_type="prelu"
        ),
    }
    return RealESRGANer(
        scale=4,
        model_path=str(weights_pth),
        model=networks[model](),
        tile=tile,
        tile_pad=10,
        pre_pad=pre_pad,
        half=False,
        device=torch.device("cpu"),
    )


def save_reference_weights(state: dict[str, torch.Tensor], path: Path) -> Path:
    """Write a state dict the way the official release files hold it (``params_ema``)."""
    torch.save({"params_ema": state}, path)
    return path


def reference_enhance(upsampler: Any, rgb: np.ndarray, outscale: float) -> np.ndarray:
    """Run ``RealESRGANer.enhance`` on RGB(A)/gray pixels; it works in OpenCV's BGR order."""
    if rgb.ndim == 3:
        order = [2, 1, 0, 3][: rgb.shape[2]]
        out, _mode = upsampler.enhance(rgb[:, :, order], outscale=outscale)
        return np.asarray(out[:, :, order])
    out, _mode = upsampler.enhance(rgb, outscale=outscale)
    return np.asarray(out)
