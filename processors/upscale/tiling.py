"""Pure array steps around the network: split channels, pre-pad, plan tiles, quantise.

The network sees float RGB in 0..1, channels first; everything here turns a working-mode
image into that, and the network's output back into 8-bit pixels, the way the reference
``RealESRGANer.enhance`` does: grayscale is run as RGB and brought back to one channel
(ITU-R 601 weights, before rounding), alpha is upscaled on its own, the right and bottom
edges are reflect-padded before the run and the reflection left out of the output.

Tiles differ from the reference in two ways, on purpose: cores are balanced (a 266-pixel
side in two tiles is 133 + 133, not 256 + 10), and every window has the same size (edge
windows are shifted inwards instead of clipped), so that windows can be stacked into
batches. Each tile still keeps at least ``pad`` pixels of real context on every side
that has any, so seams stay invisible.

Every function returns new arrays and keeps nothing between calls.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GRAY_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)
"""R, G, B weights of the reference's RGB → gray conversion (OpenCV's, ITU-R BT.601)."""


@dataclass(frozen=True)
class Span:
    """A half-open range ``[start, stop)`` along one axis."""

    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class Tile:
    """One unit of network work, in (pre-padded) input pixels.

    The network reads ``window``; only its ``core`` (inside the window) is kept, so each
    output pixel is computed with context around it. Cores tile the image exactly.
    """

    rows: Span
    cols: Span
    core_rows: Span
    core_cols: Span


def to_planes(pixels: np.ndarray) -> np.ndarray:
    """An 8-bit ``H×W`` (gray) or ``H×W×3`` (RGB) array as float32 ``3×H×W`` in 0..1."""
    rgb = np.repeat(pixels[:, :, None], 3, axis=2) if pixels.ndim == 2 else pixels
    return np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32) / np.float32(255.0)


def pre_pad(planes: np.ndarray, pad: int) -> tuple[np.ndarray, int]:
    """Reflect-pad the bottom and right edges (where the reference pads) by up to ``pad``.

    The pad shrinks for images too small to reflect it (reflection needs ``pad < side``);
    returns the padded planes and the pad actually used.
    """
    used = max(0, min(pad, planes.shape[1] - 1, planes.shape[2] - 1))
    if used == 0:
        return planes, 0
    return np.pad(planes, ((0, 0), (0, used), (0, used)), mode="reflect"), used


def plan_tiles(height: int, width: int, grid: tuple[int, int], pad: int) -> list[Tile]:
    """Equal-size windows whose cores cover the image, about ``grid`` = (rows, columns) of them.

    Cores are balanced (``ceil(side / parts)``) rather than ``tile``-sized with a sliver
    left over, so no window is spent on a few pixels; ``(1, 1)`` is one window over
    everything.
    """
    return [
        Tile(rows, cols, core_rows, core_cols)
        for rows, core_rows in _axis(height, grid[0], pad)
        for cols, core_cols in _axis(width, grid[1], pad)
    ]


def _axis(length: int, parts: int, pad: int) -> list[tuple[Span, Span]]:
    if parts <= 1:
        return [(Span(0, length), Span(0, length))]
    step = -(-length // parts)
    window = min(length, step + 2 * pad)
    spans = []
    for start in range(0, length, step):
        core = Span(start, min(start + step, length))
        first = min(max(core.start - pad, 0), length - window)
        spans.append((Span(first, first + window), core))
    return spans


def window_side(length: int, parts: int, pad: int) -> int:
    """The window length ``plan_tiles`` uses along an axis cut into ``parts``."""
    return length if parts <= 1 else min(length, -(-length // parts) + 2 * pad)


def choose_grid(height: int, width: int, *, pad: int, max_window_px: int, min_core: int) -> tuple[int, int] | None:
    """The grid with the least total window area (work) whose windows fit ``max_window_px``.

    More tiles mean more overlap computed twice, so the best grid is the coarsest that
    fits; for each row count the fewest columns that fit is taken. None when even cores
    of ``min_core`` pixels do not fit.
    """
    best: tuple[int, tuple[int, int]] | None = None
    for rows in range(1, max(1, -(-height // min_core)) + 1):
        win_h = window_side(height, rows, pad)
        for cols in range(1, max(1, -(-width // min_core)) + 1):
            win_w = window_side(width, cols, pad)
            if win_h * win_w <= max_window_px:
                work = len(_axis(height, rows, pad)) * len(_axis(width, cols, pad)) * win_h * win_w
                if best is None or work < best[0]:
                    best = (work, (rows, cols))
                break
    return None if best is None else best[1]


def window(planes: np.ndarray, tile: Tile) -> np.ndarray:
    """The input a tile's network run reads, as a new array."""
    return planes[:, tile.rows.start : tile.rows.stop, tile.cols.start : tile.cols.stop].copy()


def core(output: np.ndarray, tile: Tile, scale: int) -> np.ndarray:
    """The part of one window's ``C×H×W`` output that belongs to the tile's core."""
    top = (tile.core_rows.start - tile.rows.start) * scale
    left = (tile.core_cols.start - tile.cols.start) * scale
    return output[:, top : top + tile.core_rows.size * scale, left : left + tile.core_cols.size * scale]


def placement(tile: Tile, scale: int, height: int, width: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Where a tile's upscaled core goes in an ``height``×``width`` (unpadded) output, and
    which part of the core goes there: the pre-pad's reflection falls outside and is
    dropped, so the output never holds it and needs no cropping copy afterwards."""
    top, left = tile.core_rows.start * scale, tile.core_cols.start * scale
    bottom, right = min(tile.core_rows.stop * scale, height), min(tile.core_cols.stop * scale, width)
    rows, cols = max(0, bottom - top), max(0, right - left)
    return (slice(top, top + rows), slice(left, left + cols)), (slice(0, rows), slice(0, cols))


def quantise(output: np.ndarray, *, gray: bool) -> np.ndarray:
    """Float ``3×H×W`` network output → 8-bit ``H×W×3``, or ``H×W`` when ``gray``.

    Clamped to 0..1 first and rounded half to even as NumPy rounds, like the reference;
    gray is taken in float, before rounding, also like the reference.
    """
    clipped = np.clip(output, 0.0, 1.0)
    values = np.tensordot(GRAY_WEIGHTS, clipped, axes=1) if gray else clipped.transpose(1, 2, 0)
    return np.rint(values * np.float32(255.0)).astype(np.uint8)
