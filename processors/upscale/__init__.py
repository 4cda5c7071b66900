"""Real-ESRGAN upscaling: the ``upscale`` operation, its models and their weights.

``arch`` holds the networks, ``tiling`` the pure array steps around them, ``weights`` the
model registry and weight cache (``darkroom models``), ``engine`` the backends and
fallbacks, ``op`` the operation, ``config`` the worker settings. ``UPSCALE`` is the
instance the registry serves, reading weights from ``default_model_dir()``; a worker
with its own settings builds ``Upscale(UpscaleConfig(model_dir=...))``. Importing this
package does not import torch; the first upscale does.
"""

from processors.upscale.config import MODEL_NAMES, UpscaleConfig, default_model_dir
from processors.upscale.op import Upscale, UpscaleParams

UPSCALE = Upscale(UpscaleConfig(model_dir=default_model_dir()))

__all__ = [
    "MODEL_NAMES",
    "UPSCALE",
    "Upscale",
    "UpscaleConfig",
    "UpscaleParams",
    "default_model_dir",
]
