"""Cluster-level contrast of Contrastive Clustering (Li et al., AAAI 2021) and its entropy term.

CC reads the N×K soft-assignment matrix two ways: rows are instances' soft labels, columns
are cluster representations. The cluster-level loss is NT-Xent over the 2K columns of two
views' matrices (a column's positive is the same cluster in the other view), and the
entropy term keeps the columns from collapsing into one big cluster.
"""

from __future__ import annotations

import math

import torch


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """Half-precision inputs (autocast) are promoted; float64 stays float64 (exact tests)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def entropy_regulariser(p: torch.Tensor) -> torch.Tensor:
    """CC Eq. 5 (as CC's code writes it, dcacn.md §5.4): R(P) = log K - H(π), π_k = Σ_i P_ik / Σ_ik P_ik; 0 when clusters are balanced."""
    p = at_least_float32(p)
    marginal = p.sum(0) / p.sum()
    # The clamp only guards log(0) for an empty column; its contribution π log π is 0 anyway.
    return math.log(p.shape[1]) + (marginal * torch.log(marginal.clamp_min(1e-12))).sum()


def cluster_contrastive_loss(pa: torch.Tensor, pb: torch.Tensor, tau_c: float, entropy_weight: float = 1.0) -> torch.Tensor:
    """CC Eq. 4-6: NT-Xent over the 2K columns of P^a, P^b (cosine similarity, mean over the 2K anchors) + η(R(P^a)+R(P^b))."""
    from ccli.losses.nt_xent import nt_xent

    loss = nt_xent(pa.t(), pb.t(), tau_c)
    if entropy_weight:
        loss = loss + entropy_weight * (entropy_regulariser(pa) + entropy_regulariser(pb))
    return loss
