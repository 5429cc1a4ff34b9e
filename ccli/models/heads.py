"""MLP heads put on top of a backbone: projectors, predictors and cluster heads.

All are `MLP(in_dim, hidden_dim, out_dim, layers, batch_norm)`; the named constructors below
fix the conventions of the papers the methods follow.
"""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    """Linear → [BN] → ReLU, repeated (layers − 1) times, then a final Linear to out_dim.

    layers=1 is a single Linear layer. `last_bn` appends an affine-free BN to the output, as
    SimCLR v2 and BYOL-style heads sometimes do.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, layers: int = 2, batch_norm: bool = True,
                 last_bn: bool = False):
        super().__init__()
        if layers < 1:
            raise ValueError("an MLP needs at least one layer")
        blocks: list[nn.Module] = []
        d = in_dim
        for _ in range(layers - 1):
            blocks.append(nn.Linear(d, hidden_dim, bias=not batch_norm))
            if batch_norm:
                blocks.append(nn.BatchNorm1d(hidden_dim))
            blocks.append(nn.ReLU(inplace=True))
            d = hidden_dim
        blocks.append(nn.Linear(d, out_dim))
        if last_bn:
            blocks.append(nn.BatchNorm1d(out_dim, affine=False))
        self.net = nn.Sequential(*blocks)
        self.in_dim, self.out_dim = int(in_dim), int(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def simclr_projector(in_dim: int, hidden_dim: int | None = None, out_dim: int = 128, batch_norm: bool = False) -> MLP:
    """SimCLR / GCC projection head g(·): Linear(d, d) → ReLU → Linear(d, 128) (cctc-and-cdec.md §5)."""
    return MLP(in_dim, hidden_dim or in_dim, out_dim, layers=2, batch_norm=batch_norm)


def byol_mlp(in_dim: int, hidden_dim: int = 4096, out_dim: int = 256) -> MLP:
    """BYOL/MoBY projector or predictor: Linear → BN → ReLU → Linear (scanplus.md §4.2, PROPOSED dims)."""
    return MLP(in_dim, hidden_dim, out_dim, layers=2, batch_norm=True)


def cluster_head(in_dim: int, num_clusters: int, hidden_dim: int | None = None) -> MLP:
    """Cluster head producing logits: Linear(d, K), or Linear(d, h) → ReLU → Linear(h, K) with hidden_dim."""
    if hidden_dim:
        return MLP(in_dim, hidden_dim, num_clusters, layers=2, batch_norm=False)
    return MLP(in_dim, in_dim, num_clusters, layers=1)
