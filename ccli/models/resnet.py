"""ResNet-18/34/50 backbones built on torchvision's ResNet, in three stem variants.

- ``cifar``: 3×3 stride-1 stem conv, no max-pool (32 px; GCC/SimCLR CIFAR variant, cctc-and-cdec.md §5).
- ``stl``: 3×3 stride-1 stem conv, then MaxPool(k=2, s=2, p=1) (96 px: 96 → 49 → … → 7;
  GCC's STL-10/ImageNet-10 variant, cctc-and-cdec.md §5).
- ``imagenet``: torchvision's own 7×7 stride-2 stem and 3×3 max-pool (224 px).

The classification layer is replaced by Identity, so forward returns the global-average-pooled
feature (512-d for ResNet-18/34, 2048-d for ResNet-50). Initialisation is torchvision's
(Kaiming-normal fan_out convolutions, BN weight 1 / bias 0, no zero-init of residual branches).
"""

from __future__ import annotations

import torch
from torch import nn

DEPTHS = ("resnet18", "resnet34", "resnet50")
STEMS = ("cifar", "stl", "imagenet")

# Input sizes each stem is meant for, inclusive. Outside these the receptive field or the
# final feature map degenerates (e.g. the ImageNet stem leaves 1×1 maps below 64 px).
STEM_SIZES = {"cifar": (16, 64), "stl": (48, 160), "imagenet": (64, 1024)}


def auto_stem(image_size: int) -> str:
    """The variant a plain 'resnet18' uses for a given input size."""
    if image_size <= STEM_SIZES["cifar"][1]:
        return "cifar"
    if image_size <= STEM_SIZES["stl"][1]:
        return "stl"
    return "imagenet"


class ResNetBackbone(nn.Module):
    """A torchvision ResNet trunk with a chosen stem; forward returns pooled features [B, out_dim]."""

    def __init__(self, depth: str = "resnet18", stem: str = "cifar", in_channels: int = 3):
        super().__init__()
        import torchvision

        if depth not in DEPTHS:
            raise ValueError(f"depth must be one of {DEPTHS}, not {depth!r}")
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {STEMS}, not {stem!r}")
        net = getattr(torchvision.models, depth)(weights=None)
        if stem in ("cifar", "stl"):
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
            net.maxpool = nn.Identity() if stem == "cifar" else nn.MaxPool2d(kernel_size=2, stride=2, padding=1)
        elif in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.out_dim = int(net.fc.in_features)
        net.fc = nn.Identity()
        self.net = net
        self.stem = stem

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
