"""The two Real-ESRGAN generator networks, in plain torch, with the reference's parameter names.

``RRDBNet`` (ESRGAN's Residual-in-Residual Dense Blocks; RealESRGAN_x4plus has 23 blocks,
the anime model 6) and ``SRVGGNetCompact`` (realesr-animevideov3: a VGG-style stack that
upsamples only in its last layer). Both follow basicsr's definitions layer for layer and
name every parameter as basicsr does, so the official ``.pth`` state dicts and the
reference ``RealESRGANer`` load into them unchanged. They are written here, not imported
from basicsr, because basicsr pulls in torchvision, which does not import on CPU-only torch.

Only the x4 variants exist here: every model darkroom offers is a 4× network, and other
output scales are a resize of its output, as in the reference.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from processors.upscale.config import NET_SCALE

LEAK_SLOPE = 0.2
RESIDUAL_SCALE = 0.2
"""ESRGAN scales each block's residual by 0.2 before adding it (stabilises deep training)."""


class ResidualDenseBlock(nn.Module):
    """Five 3×3 convs, each seeing the block input and every earlier output (dense links)."""

    def __init__(self, num_feat: int, num_grow_ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = F.leaky_relu(self.conv1(x), LEAK_SLOPE)
        x2 = F.leaky_relu(self.conv2(torch.cat((x, x1), 1)), LEAK_SLOPE)
        x3 = F.leaky_relu(self.conv3(torch.cat((x, x1, x2), 1)), LEAK_SLOPE)
        x4 = F.leaky_relu(self.conv4(torch.cat((x, x1, x2, x3), 1)), LEAK_SLOPE)
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * RESIDUAL_SCALE + x


class _RRDB(nn.Module):
    """Three dense blocks in a row, wrapped in one more scaled residual."""

    def __init__(self, num_feat: int, num_grow_ch: int) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * RESIDUAL_SCALE + x


class RRDBNet(nn.Module):
    """ESRGAN's generator at 4×: features, ``num_block`` RRDBs, two nearest-neighbour 2× steps.

    Convolutions in ``state_dict`` order: ``conv_first``, ``body.N.rdbK.convM``,
    ``conv_body``, ``conv_up1``, ``conv_up2``, ``conv_hr``, ``conv_last`` (the order the
    ncnn export lists them in too).
    """

    def __init__(self, num_block: int, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.conv_first = nn.Conv2d(3, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*(_RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, 3, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = F.leaky_relu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")), LEAK_SLOPE)
        feat = F.leaky_relu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")), LEAK_SLOPE)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), LEAK_SLOPE))


class SRVGGNetCompact(nn.Module):
    """A plain conv + PReLU stack whose last conv emits 4×4 sub-pixels per pixel.

    It learns only the residual over a nearest-neighbour enlargement, so it is ~20× cheaper
    than RRDBNet. ``body`` holds ``conv, prelu`` pairs then the last conv, indexed as in
    basicsr (``body.0`` … ``body.{2 * num_conv + 2}``).
    """

    def __init__(self, num_conv: int, num_feat: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, num_feat, 3, 1, 1), nn.PReLU(num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), nn.PReLU(num_feat)]
        layers.append(nn.Conv2d(num_feat, 3 * NET_SCALE * NET_SCALE, 3, 1, 1))
        self.body = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        return F.pixel_shuffle(out, NET_SCALE) + F.interpolate(x, scale_factor=NET_SCALE, mode="nearest")
