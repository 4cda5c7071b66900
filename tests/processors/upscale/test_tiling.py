"""The pure parts of the upscaler: tiling, padding, quantising, planning, host probes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from processors.upscale import tiling
from processors.upscale.engine import available_memory, choose_model, native_bf16, plan_tiling
from processors.upscale.host import cpu_quota


@pytest.mark.parametrize(
    ("height", "width", "grid"),
    [(266, 266, (1, 2)), (1034, 777, (4, 7)), (74, 74, (1, 1)), (100, 37, (3, 1)), (10, 9, (4, 4))],
)
def test_tile_cores_cover_the_image_exactly_once_and_windows_are_equal(
    height: int, width: int, grid: tuple[int, int]
) -> None:
    tiles = tiling.plan_tiles(height, width, grid, pad=10)
    covered = np.zeros((height, width), dtype=np.int32)
    for t in tiles:
        covered[t.core_rows.start : t.core_rows.stop, t.core_cols.start : t.core_cols.stop] += 1
        assert t.rows.start <= t.core_rows.start and t.core_rows.stop <= t.rows.stop
        assert t.cols.start <= t.core_cols.start and t.core_cols.stop <= t.cols.stop
        assert t.rows.start >= 0 and t.rows.stop <= height and t.cols.start >= 0 and t.cols.stop <= width
    assert (covered == 1).all()
    assert len({(t.rows.size, t.cols.size) for t in tiles}) == 1  # stackable into one batch


def test_every_core_keeps_pad_pixels_of_context_where_the_image_has_them() -> None:
    for t in tiling.plan_tiles(300, 300, (3, 3), pad=10):
        assert t.core_rows.start - t.rows.start >= min(10, t.core_rows.start)
        assert t.rows.stop - t.core_rows.stop >= min(10, 300 - t.core_rows.stop)


def test_cores_are_balanced_instead_of_leaving_a_sliver() -> None:
    tiles = tiling.plan_tiles(266, 266, (1, 2), pad=10)
    assert [t.core_cols.size for t in tiles] == [133, 133]


def test_the_chosen_grid_fits_and_does_the_least_work() -> None:
    budget = 48_000
    grid = tiling.choose_grid(1034, 1034, pad=10, max_window_px=budget, min_core=32)
    assert grid is not None
    tiles = tiling.plan_tiles(1034, 1034, grid, pad=10)
    work = len(tiles) * tiles[0].rows.size * tiles[0].cols.size
    assert tiles[0].rows.size * tiles[0].cols.size <= budget
    for rows in range(1, 12):
        for cols in range(1, 12):
            other = tiling.plan_tiles(1034, 1034, (rows, cols), pad=10)
            if other[0].rows.size * other[0].cols.size <= budget:
                assert len(other) * other[0].rows.size * other[0].cols.size >= work
    assert tiling.choose_grid(1000, 1000, pad=10, max_window_px=100, min_core=32) is None
    assert tiling.choose_grid(64, 64, pad=10, max_window_px=64 * 64, min_core=32) == (1, 1)


def test_plan_tiling_honours_a_requested_tile_and_fits_the_batch() -> None:
    plan = plan_tiling(266, 266, window_bytes_per_px=100, budget_bytes=10**9, requested=128)
    assert plan is not None
    assert len(plan.tiles) == 9 and plan.batch == 8
    untiled = plan_tiling(266, 266, window_bytes_per_px=100, budget_bytes=10**9, requested=0)
    assert untiled is not None and len(untiled.tiles) == 1
    small = plan_tiling(266, 266, window_bytes_per_px=16_384, budget_bytes=200 * 2**20, requested=None)
    assert small is not None
    assert small.tiles[0].rows.size * small.tiles[0].cols.size * 16_384 <= 200 * 2**20
    assert plan_tiling(266, 266, window_bytes_per_px=16_384, budget_bytes=2**20, requested=None) is None


def test_pre_pad_reflects_bottom_and_right_like_torch() -> None:
    planes = np.random.default_rng(1).random((3, 20, 30), dtype=np.float32)
    padded, used = tiling.pre_pad(planes, 10)
    expected = F.pad(torch.from_numpy(planes)[None], (0, 10, 0, 10), mode="reflect")[0].numpy()
    assert used == 10 and np.array_equal(padded, expected)
    tiny, used_tiny = tiling.pre_pad(planes[:, :4, :4], 10)
    assert used_tiny == 3 and tiny.shape == (3, 7, 7)
    assert tiling.pre_pad(planes[:, :1, :5], 10)[1] == 0


def test_to_planes_replicates_gray_and_scales_to_unit_range() -> None:
    gray = np.array([[0, 255], [51, 102]], dtype=np.uint8)
    planes = tiling.to_planes(gray)
    assert planes.shape == (3, 2, 2) and planes.dtype == np.float32
    assert np.allclose(planes[0], planes[2]) and np.isclose(planes[1, 1, 0], 0.2)


def test_quantise_clamps_rounds_and_takes_gray_before_rounding() -> None:
    out = np.array([[[-0.5, 0.5, 2.0]], [[0.0, 0.5, 1.0]], [[1.0, 0.5, 0.0]]], dtype=np.float32)
    rgb = tiling.quantise(out, gray=False)
    assert rgb.shape == (1, 3, 3)
    assert rgb[0, 0].tolist() == [0, 0, 255] and rgb[0, 2].tolist() == [255, 255, 0]
    gray = tiling.quantise(out, gray=True)
    assert gray.shape == (1, 3)
    assert gray[0, 0] == round(255 * 0.114) and gray[0, 1] == 128


def test_placement_drops_the_pre_pad_and_agrees_with_the_core() -> None:
    # a 30×40 image pre-padded to 40×50, in 2×2 tiles, upscaled 4× into 120×160
    tiles = tiling.plan_tiles(40, 50, (2, 2), pad=10)
    covered = np.zeros((120, 160), dtype=np.int32)
    for tile in tiles:
        (rows, cols), (core_rows, core_cols) = tiling.placement(tile, 4, 120, 160)
        output = np.zeros((3, tile.rows.size * 4, tile.cols.size * 4), dtype=np.float32)
        block = tiling.core(output, tile, 4)[:, core_rows, core_cols]
        assert block.shape[1:] == covered[rows, cols].shape
        covered[rows, cols] += 1
    assert (covered == 1).all()


def test_cpu_quota_follows_affinity_and_cgroup_limits() -> None:
    assert cpu_quota(8, None) == 8
    assert cpu_quota(8, "max 100000\n") == 8
    assert cpu_quota(8, "200000 100000\n") == 2
    assert cpu_quota(8, "150000 100000") == 2
    assert cpu_quota(2, "800000 100000") == 2
    assert cpu_quota(0, "50000 100000") == 1


def test_bf16_is_native_only_with_avx512_bf16_or_amx() -> None:
    assert native_bf16("processor: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    assert native_bf16("flags : sse amx_bf16 amx_tile\n")
    assert not native_bf16("flags : fpu avx2 fma f16c\n")
    assert not native_bf16("")


def test_available_memory_reads_meminfo() -> None:
    assert available_memory("MemTotal: 100 kB\nMemAvailable:    2048 kB\n") == 2048 * 1024
    assert available_memory("MemTotal: 100 kB\n") == 0


def test_auto_model_takes_the_photo_model_when_it_fits_the_budget() -> None:
    assert choose_model(64 * 64, 120.0, "cpu-fp32")[0] == "RealESRGAN_x4plus"
    model, reason = choose_model(4000 * 3000, 120.0, "cpu-fp32")
    assert model == "realesr-animevideov3" and "over" in reason
    assert choose_model(4000 * 3000, 120.0, "cuda-fp16")[0] == "RealESRGAN_x4plus"
