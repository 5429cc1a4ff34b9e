"""A small convolutional backbone for 8–64 px grayscale images (digits, MNIST-like).

Three 3×3 conv → BN → ReLU stages of 32, 64 and 128 channels and global average pooling: about
93k parameters and a 128-d output. The second and third stages always run on about 8×8 and
4×4 maps, whatever the input size: 8–15 px images keep their resolution up to the second
stage; larger ones enter with a stride-2 first convolution and are max-pooled down to 8×8 or
less before it (28 px → 14 → 7 → 4). The cost per image is then about the same for
digits (8 px) and Fashion-MNIST (28 px), which is what makes `ccli pretrain` practical on a
2-core CPU (seconds per epoch on digits, a minute or two on Fashion-MNIST).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn


class SmallCNN(nn.Module):
    """Conv backbone whose forward returns pooled features [B, out_dim]."""

    def __init__(self, in_channels: int = 1, image_size: int = 8, widths: Sequence[int] = (32, 64, 128)):
        super().__init__()
        stride = 2 if image_size >= 16 else 1
        side = math.ceil(image_size / stride)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, stride, 1, bias=False),
                                   nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)]
        while side > 8:  # bring the map to at most 8×8 before the second stage
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
            side = math.ceil(side / 2)
        c_in = widths[0]
        for stage, width in enumerate(widths[1:], start=1):
            layers += [nn.Conv2d(c_in, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            if stage < len(widths) - 1:
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
