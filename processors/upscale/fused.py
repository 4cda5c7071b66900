"""RRDBNet's forward pass for CPU inference through oneDNN's fused convolutions.

The same arithmetic as ``arch.RRDBNet.forward`` in fewer passes over memory, which is
what the CPU path is bound by once the convolutions themselves run at the hardware's
bf16 rate: each conv + LeakyReLU is one oneDNN primitive; each dense block's residual
scale (0.2) is folded into its last conv's weights and the residual add is done by that
conv; an RRDB's own scaled residual is one ``add``; and each conv's output is copied
once into one buffer per block instead of four growing concatenations being allocated
(the conv still copies its strided channel slice: the same bytes as ``torch.cat``, but
no new tensors). ``benchmarks/upscale_fused.py`` measures it against the plain module
(about 2 % less time per bf16 forward on the 2-core AVX512-BF16 machine: ratio 1.017 in
two runs; concatenating instead of the buffer was 1.5 % slower than the plain module).
Small, because the convolutions are ~90 % of the forward (the benchmark reports their
share) and already run at the CPU's bf16 rate.

Only for CPU tensors in oneDNN-supported dtypes; the CUDA path and the reference
comparisons use the plain module. ``fuse`` returns None where the fused operators are
missing, and the caller keeps the plain module.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn
from torch.nn import functional as F

from processors.upscale.arch import LEAK_SLOPE, RESIDUAL_SCALE, ResidualDenseBlock, RRDBNet

_ONE = [1, 1]
"""Stride, padding and dilation of every 3×3 conv in RRDBNet."""


def _pointwise() -> object | None:
    """``mkldnn::_convolution_pointwise``, or None where this torch build lacks it."""
    if not torch.backends.mkldnn.is_available():
        return None
    return getattr(torch.ops.mkldnn, "_convolution_pointwise", None)


def _conv(x: torch.Tensor, conv: nn.Conv2d, *, leaky: bool = True) -> torch.Tensor:
    """``conv(x)``, followed by LeakyReLU(0.2) in the same primitive when ``leaky``."""
    attr, scalars = ("leaky_relu", [LEAK_SLOPE]) if leaky else ("none", [])
    return torch.ops.mkldnn._convolution_pointwise(x, conv.weight, conv.bias, _ONE, _ONE, _ONE, 1, attr, scalars, "")


def _conv_add(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """``conv(x) + other`` in one primitive."""
    return torch.ops.mkldnn._convolution_pointwise.binary(
        x, other, weight, bias, _ONE, _ONE, _ONE, 1, "add", 1.0, None, [], None
    )


class _FusedBlock:
    """One dense block; its last conv is kept pre-multiplied by the residual scale."""

    def __init__(self, block: ResidualDenseBlock) -> None:
        self.convs: list[nn.Conv2d] = [block.conv1, block.conv2, block.conv3, block.conv4]
        self.grow = block.conv1.out_channels
        last = block.conv5
        assert last.bias is not None
        # scaled in fp32, then rounded once to the module's dtype
        self.weight5 = (last.weight.float() * RESIDUAL_SCALE).to(last.weight.dtype)
        self.bias5 = (last.bias.float() * RESIDUAL_SCALE).to(last.bias.dtype)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n, feat, h, w = x.shape
        links = torch.empty((n, feat + 4 * self.grow, h, w), dtype=x.dtype, memory_format=torch.channels_last)
        links[:, :feat].copy_(x)
        width = feat
        for conv in self.convs:
            links[:, width : width + self.grow].copy_(_conv(links[:, :width], conv))
            width += self.grow
        return _conv_add(links, self.weight5, self.bias5, x)


class FusedRRDBNet(nn.Module):
    """An ``RRDBNet`` (already on the CPU in its final dtype, channels-last) run fused."""

    def __init__(self, net: RRDBNet) -> None:
        super().__init__()
        self.net = net
        self.blocks = [
            tuple(_FusedBlock(rdb) for rdb in cast(list[ResidualDenseBlock], list(b.children()))) for b in net.body
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        feat = _conv(x, net.conv_first, leaky=False)
        body = feat
        for rdb1, rdb2, rdb3 in self.blocks:
            body = torch.add(body, rdb3(rdb2(rdb1(body))), alpha=RESIDUAL_SCALE)
        assert net.conv_body.bias is not None
        feat = _conv_add(body, net.conv_body.weight, net.conv_body.bias, feat)
        feat = _conv(F.interpolate(feat, scale_factor=2, mode="nearest"), net.conv_up1)
        feat = _conv(F.interpolate(feat, scale_factor=2, mode="nearest"), net.conv_up2)
        return _conv(_conv(feat, net.conv_hr), net.conv_last, leaky=False)


def fuse(module: nn.Module) -> nn.Module | None:
    """The fused equivalent of ``module`` for CPU inference, or None when there is none."""
    if not isinstance(module, RRDBNet) or _pointwise() is None:
        return None
    return FusedRRDBNet(module).eval()
