"""CBAM (Woo et al., ECCV 2018) and the CBAM-ResNet-34 of DCACN (seed 003, dcacn.md §3).

CBAM sits on the residual branch of every BasicBlock, after the second conv+BN and before the
shortcut addition (CBAM-code; ambiguity A7): channel attention first, then spatial attention.
The spatial gate is Woo et al.'s 7×7 conv over [mean_C; max_C], not the paper's Eq. 3, which
is a copy of Eq. 1 with the wrong shapes (A6).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class ChannelAttention(nn.Module):
    """DCACN Eq. 1-2: M_c = σ(MLP(AvgPool(F)) + MLP(MaxPool(F))) with one MLP shared by both descriptors."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # max(...).values rather than amax: same value, but its backward scatters to the argmax
        # instead of building an equality mask, about a third cheaper on CPU.
        peak = x.flatten(2).max(2).values
        return torch.sigmoid(self.mlp(x.mean((2, 3))) + self.mlp(peak))[:, :, None, None]


class SpatialAttention(nn.Module):
    """DCACN Eq. 3-4 as corrected (§3.3): M_s = σ(BN(conv_k×k([mean_C(F'); max_C(F')]))) ∈ R^{1×H×W}."""

    def __init__(self, kernel_size: int = 7, batch_norm: bool = True, bn_zero_init: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=not batch_norm)
        # CBAM-code keeps a BN (momentum 0.01) after the spatial conv; zero-initialising its
        # weight starts every gate at a uniform 0.5, as the official ResNet does (optional).
        self.bn = nn.BatchNorm2d(1, momentum=0.01) if batch_norm else nn.Identity()
        if batch_norm and bn_zero_init:
            nn.init.zeros_(self.bn.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(1, keepdim=True), x.max(1, keepdim=True).values], dim=1)
        return torch.sigmoid(self.bn(self.conv(pooled)))


class CBAM(nn.Module):
    """Channel then spatial attention, applied in sequence: F'' = M_s(F') ⊗ F', F' = M_c(F) ⊗ F."""

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7, spatial_bn: bool = True,
                 spatial_bn_zero_init: bool = False):
        super().__init__()
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention(kernel_size, spatial_bn, spatial_bn_zero_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.channel(x) * x
        return self.spatial(x) * x


class CBAMBasicBlock(nn.Module):
    """ResNet BasicBlock with CBAM on the residual branch, after bn2 and before the addition."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1, attention: bool = True, **cbam_kwargs):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.cbam = CBAM(planes, **cbam_kwargs) if attention else nn.Identity()
        self.shortcut = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.cbam(self.bn2(self.conv2(out)))
        return self.relu(out + self.shortcut(x))


class CBAMResNet(nn.Module):
    """ResNet of BasicBlocks with CBAM in every block; forward returns the pooled feature z (fc removed).

    Stems follow ccli.models.resnet: 'imagenet' is the 7×7/2 conv + 3×3/2 max-pool used at
    224 px (CC, dcacn.md §3.1); 'cifar' a 3×3/1 conv without pooling (32 px, the spec's
    non-faithful fast profile, §6); 'stl' the same conv followed by a 2×2/2 max-pool (96 px).
    """

    def __init__(self, depths: Sequence[int] = (3, 4, 6, 3), widths: Sequence[int] = (64, 128, 256, 512),
                 in_channels: int = 3, stem: str = "imagenet", attention: bool = True, **cbam_kwargs):
        super().__init__()
        if stem == "imagenet":
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False), nn.BatchNorm2d(widths[0]),
                nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1),
            )
        elif stem in ("cifar", "stl"):
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True),
                *([nn.MaxPool2d(2, 2, 1)] if stem == "stl" else []),
            )
        else:
            raise ValueError(f"stem must be 'imagenet', 'stl' or 'cifar', not {stem!r}")
        layers, in_planes = [], widths[0]
        for stage, (depth, width) in enumerate(zip(depths, widths)):
            for i in range(depth):
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(CBAMBasicBlock(in_planes, width, stride, attention, **cbam_kwargs))
                in_planes = width
        self.blocks = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = widths[-1]
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.blocks(self.stem(x))), 1)


class CBAMSmallCNN(nn.Module):
    """The digits/MNIST SmallCNN (ccli.models.small_cnn) with a CBAM after every conv+BN.

    Built from a SmallCNN of the same arguments, so the two share stages, widths, strides and
    pooling and differ only by attention; a `cc` vs `dcacn` comparison on digits then isolates
    what CBAM adds. CBAM sits after BN and before the ReLU that ends the stage, mirroring its
    place in the ResNet block (after bn2, before the addition and ReLU).
    """

    def __init__(self, in_channels: int = 1, image_size: int = 8, widths: Sequence[int] = (32, 64, 128),
                 attention: bool = True, **cbam_kwargs):
        super().__init__()
        from ccli.models.small_cnn import SmallCNN

        # r = 16 would leave 2 hidden units at 32 channels; 8 keeps at least 4 (PROPOSED).
        cbam_kwargs.setdefault("reduction", 8)
        base = SmallCNN(in_channels, image_size, widths)
        layers: list[nn.Module] = []
        for layer in base.features:
            layers.append(layer)
            if attention and isinstance(layer, nn.BatchNorm2d):
                cbam = CBAM(layer.num_features, **cbam_kwargs)
                _init_weights(cbam)
                layers.append(cbam)
        self.features = nn.Sequential(*layers)
        self.pool = base.pool
        self.out_dim = base.out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.features(x)), 1)


def _init_weights(module: nn.Module) -> None:
    # CC-code / torchvision: Kaiming-normal (fan_out) convolutions, BN weight 1 bias 0. The
    # spatial-gate BN keeps whatever SpatialAttention chose (zero-init is opt-in).
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d) and m.num_features > 1:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def cbam_resnet34(in_channels: int = 3, stem: str = "imagenet", **cbam_kwargs) -> CBAMResNet:
    """DCACN's encoder: ResNet-34 [3, 4, 6, 3] with one CBAM per BasicBlock (16 in all), 512-d output."""
    return CBAMResNet((3, 4, 6, 3), (64, 128, 256, 512), in_channels, stem, **cbam_kwargs)


def cbam_resnet18(in_channels: int = 3, stem: str = "cifar", **cbam_kwargs) -> CBAMResNet:
    """A lighter CBAM-ResNet for the non-faithful fast profiles (ResNet-18 depths)."""
    return CBAMResNet((2, 2, 2, 2), (64, 128, 256, 512), in_channels, stem, **cbam_kwargs)


def _register() -> None:
    """Make the CBAM backbones buildable by name through ccli.models.build_backbone."""
    from ccli.models import register_backbone
    from ccli.models.resnet import STEM_SIZES, auto_stem

    register_backbone("cbam_small_cnn", lambda c, size: CBAMSmallCNN(c, size), 8, 64,
                      "small_cnn with CBAM after every conv+BN (digits, MNIST)")
    lo = min(v[0] for v in STEM_SIZES.values())
    hi = max(v[1] for v in STEM_SIZES.values())
    for name, make in (("cbam_resnet34", cbam_resnet34), ("cbam_resnet18", cbam_resnet18)):
        register_backbone(name, lambda c, size, make=make: make(c, auto_stem(size)), lo, hi,
                          f"{name[5:]} with CBAM in every BasicBlock, stem chosen by image size")
        for stem, (s_lo, s_hi) in STEM_SIZES.items():
            register_backbone(f"{name}-{stem}", lambda c, size, make=make, stem=stem: make(c, stem), s_lo, s_hi,
                              f"{name[5:]} with CBAM in every BasicBlock, {stem} stem")


_register()
