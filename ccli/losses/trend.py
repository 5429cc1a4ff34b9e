"""CCTC's trend-consistency losses (cctc-and-cdec.md §8.4–8.6; CCTC §2.4.3–2.4.4).

Both are (1/B²) Σ_{i,j∈ℬ} W_ij · exp(−sim(·_i, ·_j)) with W = sg[M_S ⊙ 𝕀(M_S ≥ δ)] the batch's
block of the trend constraint matrix (ccli.methods.trend): the batch estimate of the paper's
1/N² sum (A-15). Training lowers them by raising the similarity of the selected pairs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _f32(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _weighted_exp_neg(weights: torch.Tensor, sim: torch.Tensor, norm: str) -> torch.Tensor:
    weights = weights.detach().to(sim.dtype)
    total = (weights * torch.exp(-sim)).sum()
    if norm == "pairs":  # --set consistency_norm=pairs: mean over the selected pairs (not the paper's)
        return total / (weights > 0).sum().clamp_min(1)
    return total / weights.shape[0] ** 2


def instance_consistency_loss(weights: torch.Tensor, z: torch.Tensor, norm: str = "b2") -> torch.Tensor:
    """CCTC §2.4.4, L_z = (1/B²) Σ_ij W_ij e^{−cos(z_i, z_j)} on the anchor view's embeddings z [B, D]."""
    z = F.normalize(_f32(z), dim=1)
    return _weighted_exp_neg(weights, z @ z.t(), norm)


def cluster_consistency_loss(weights: torch.Tensor, y: torch.Tensor, norm: str = "b2") -> torch.Tensor:
    """CCTC §2.4.3, L_y (the total objective's L_c) = (1/B²) Σ_ij W_ij e^{−cos(y_i, y_j)} on soft labels y [B, K]."""
    y = F.normalize(_f32(y), dim=1)
    return _weighted_exp_neg(weights, y @ y.t(), norm)
