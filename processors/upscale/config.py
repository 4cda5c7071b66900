"""The upscaler's worker configuration and the names a request may use; no torch here.

Kept apart from the engine so that importing ``processors`` (every worker, the CLI)
does not load torch (~3 s, ~200 MB): only a process that upscales pays for it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

NET_SCALE = 4
"""The upscale factor of every network offered; other scales resize its output."""

MODEL_NAMES = ("RealESRGAN_x4plus", "RealESRGAN_x4plus_anime_6B", "realesr-animevideov3")
DEFAULT_MODEL = "RealESRGAN_x4plus"
FAST_MODEL = "realesr-animevideov3"

PRE_PAD = 10
"""Reflection added at the bottom/right before the run (the reference's default)."""
TILE_PAD = 10
"""Context around each tile's core (the reference's default)."""

Precision = Literal["auto", "exact"]
AlphaMode = Literal["model", "linear"]
Device = Literal["auto", "cpu", "cuda"]


def default_model_dir() -> Path:
    """``models/`` in darkroom's data home: where ``darkroom models fetch`` puts weights.

    Follows the rule of ``streams``' ``Settings.home`` (``DARKROOM_HOME``, else
    ``$XDG_DATA_HOME/darkroom``, else ``~/.local/share/darkroom``), read here rather than
    imported because processors never import streams; workers pass their own
    ``Settings.home / "models"`` explicitly.
    """
    home = os.environ.get("DARKROOM_HOME")
    if home:
        return Path(home).expanduser() / "models"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "darkroom" / "models"


@dataclass(frozen=True, kw_only=True)
class UpscaleConfig:
    """Worker-wide settings of the upscaler (not per request).

    ``model_dir`` holds the prepared weights (``darkroom models fetch``); nothing is
    downloaded or converted while an image waits. ``memory_budget_bytes`` bounds the
    worker's peak RSS during an upscale (tile sizes are chosen to fit it);
    ``max_output_pixels`` bounds the 4× canvas and the output, whose buffers cannot be
    tiled (64 MP keeps them under ~0.5 GiB). ``speed_budget_s`` is what ``model=auto``
    may spend per image; ``allow_fallback`` is the default for requests that do not
    say ``fallback=``.
    """

    model_dir: Path
    memory_budget_bytes: int = 1536 * 2**20
    max_output_pixels: int = 64_000_000
    speed_budget_s: float = 120.0
    allow_fallback: bool = True
    device: Device = "auto"
    cpu_bf16: bool = True
    """Use bf16 on CPUs that compute it natively; False keeps a worker on fp32 (its
    outputs then live under their own keys: the backend is part of them)."""
