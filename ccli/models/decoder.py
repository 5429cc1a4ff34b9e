"""The decoder g_D of cdec (spec cctc-and-cdec.md §17.2): an embedding e back to an image.

    Linear(d, W·s0·s0) → reshape [W, s0, s0]
    → (n − 1) × [ConvTranspose2d(w, w/2, 4, 2, 1) → BN → ReLU]   (each doubles the side)
    → ConvTranspose2d(·, C, 4, 2, 1)                             (no output activation)
    → centre crop to the image side when 2ⁿ·s0 overshoots it

n is the largest number of doublings that keeps s0 = ⌈size/2ⁿ⌉ ≥ 4, which gives the spec's
two decoders exactly (32 px: s0 = 4, three up-blocks 256→128→64→3; 96 px: s0 = 6, four
up-blocks 256→128→64→32→3) and extends them to other sides (8 px: 4 → 8; 28 px: 7 → 14 → 28).
The output has no activation: the target is the normalised input tensor.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def decoder_layout(size: int) -> tuple[int, int]:
    """(n doublings, start side s0) for an output side `size` (see the module doc)."""
    if size < 2:
        raise ValueError(f"the decoder needs images of at least 2 px, not {size}")
    n = 1
    while math.ceil(size / 2 ** (n + 1)) >= 4 and size / 2 ** (n + 1) >= 4:
        n += 1
    return n, math.ceil(size / 2**n)


class Decoder(nn.Module):
    """g_D: [B, in_dim] → [B, channels, size, size]."""

    def __init__(self, in_dim: int, channels: int, size: int, width: int = 256):
        super().__init__()
        n, side = decoder_layout(size)
        self.size, self.side, self.width = int(size), side, int(width)
        self.fc = nn.Linear(in_dim, width * side * side)
        blocks: list[nn.Module] = []
        w = width
        for _ in range(n - 1):
            out = max(channels, w // 2)
            blocks += [nn.ConvTranspose2d(w, out, 4, 2, 1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            w = out
        blocks.append(nn.ConvTranspose2d(w, channels, 4, 2, 1))
        self.up = nn.Sequential(*blocks)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        x = self.up(self.fc(e).view(len(e), self.width, self.side, self.side))
        extra = x.shape[-1] - self.size
        if extra:
            top = extra // 2
            x = x[..., top : top + self.size, top : top + self.size]
        return x
