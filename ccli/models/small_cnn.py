"""A small convolutional backbone for 8–64 px grayscale images (digits, MNIST-like).

Three 3×3 conv → BN → ReLU stages of 32, 64 and 128 channels with 2× max-pooling between them
and global average pooling at the end: about 93k parameters and a 128-d output. Images of 16 px
or more get one extra pooling after the first stage, so a 28 px image costs about what an 8 px
one does after the first layer; this is what keeps `ccli pretrain --data digits` to seconds
per epoch on two CPU cores.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class SmallCNN(nn.Module):
    """Conv backbone whose forward returns pooled features [B, out_dim]."""

    def __init__(self, in_channels: int = 1, image_size: int = 8, widths: Sequence[int] = (32, 64, 128)):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_channels
        for stage, width in enumerate(widths):
            layers += [nn.Conv2d(c_in, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            last = stage == len(widths) - 1
            # Pool after stage 0 only when the image is large enough that 8×8 maps survive it.
            if not last and (stage > 0 or image_size >= 16):
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            c_in = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = int(widths[-1])
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.features(x)), 1)
