"""The fused CPU forward of RRDBNet computes what the plain module computes."""

from __future__ import annotations

import torch

from processors.upscale import fused
from processors.upscale.arch import RRDBNet, SRVGGNetCompact


def _net(dtype: torch.dtype) -> RRDBNet:
    torch.manual_seed(7)
    net = RRDBNet(num_block=2)
    with torch.no_grad():  # default init leaves the residual branches tiny; make them matter
        for p in net.parameters():
            p.mul_(3.0)
    return net.eval().requires_grad_(False).to(dtype=dtype).to(memory_format=torch.channels_last)  # type: ignore[call-overload]


def test_fused_forward_matches_the_plain_module_in_fp32() -> None:
    net = _net(torch.float32)
    fast = fused.fuse(net)
    assert isinstance(fast, fused.FusedRRDBNet)
    x = torch.rand(2, 3, 21, 34).to(memory_format=torch.channels_last)
    with torch.inference_mode():
        plain, ours = net(x), fast(x)
    assert ours.shape == plain.shape == (2, 3, 84, 136)
    assert plain.abs().max() > 0.5  # the comparison is over real signal, not zeros
    assert (ours - plain).abs().max().item() <= 1e-4


def test_fused_bf16_is_as_close_to_fp32_as_the_plain_bf16_module() -> None:
    x = torch.rand(1, 3, 24, 24).to(memory_format=torch.channels_last)
    with torch.inference_mode():
        exact = _net(torch.float32)(x)
        low = _net(torch.bfloat16)
        fast = fused.fuse(low)
        assert fast is not None
        plain_error = (low(x.bfloat16()).float() - exact).abs().mean().item()
        fused_error = (fast(x.bfloat16()).float() - exact).abs().mean().item()
    assert 0 < fused_error <= 1.5 * plain_error


def test_only_rrdbnet_has_a_fused_form() -> None:
    assert fused.fuse(SRVGGNetCompact(num_conv=2)) is None
