"""Decoupled contrastive losses (DCACN, seed 003; Yeh et al.'s DCL): the positive is not in the denominator.

InfoNCE's gradient on each anchor is scaled by 1 - softmax(positive), which vanishes for an
easy positive or a small batch (negative-positive coupling). DCL removes the positive from
the denominator so that factor is 1. The loss can therefore be negative; it is never
clamped (dcacn.md §5.2).

All functions are pure functions of tensors. Similarities are computed in float32 even under
autocast, because exp(sim/τ) with τ = 0.5 ... 1 overflows nothing but loses precision in bf16.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ccli.losses.cluster import at_least_float32, entropy_regulariser


def decoupled_contrastive_loss(a: torch.Tensor, b: torch.Tensor, tau: float) -> torch.Tensor:
    """DCACN Eq. 6 (DCL form, dcacn.md §5.2): mean over rows and both directions of -sim(a_i,b_i)/τ + log Σ_{j≠i} e^{sim/τ}."""
    a = F.normalize(at_least_float32(a), dim=1)
    b = F.normalize(at_least_float32(b), dim=1)
    n = a.shape[0]
    if n < 2:
        raise ValueError("the decoupled loss needs at least 2 rows (a row's negatives are the other rows)")
    same_row = torch.eye(n, dtype=torch.bool, device=a.device)
    # Both the anchor's self-similarity and its positive are masked out of the denominator:
    # the 2(n-1) remaining terms are exactly the other rows of both views (ambiguity A4).
    mask = torch.cat([same_row, same_row], dim=1)

    def one_way(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        positive = (x * y).sum(1) / tau
        negatives = torch.cat([x @ x.t(), x @ y.t()], dim=1) / tau
        negatives = negatives.masked_fill(mask, float("-inf"))
        return (torch.logsumexp(negatives, dim=1) - positive).mean()

    return 0.5 * (one_way(a, b) + one_way(b, a))


def decoupled_cluster_loss(
    pa: torch.Tensor, pb: torch.Tensor, tau_c: float, mode: str = "row", entropy_weight: float = 0.0
) -> torch.Tensor:
    """DCACN Eq. 7 (dcacn.md §5.3-5.4): DCL over probability rows (`row`, literal) or the K columns (`column`, CC's form), plus η(R(P^a)+R(P^b))."""
    if mode == "row":
        loss = decoupled_contrastive_loss(pa, pb, tau_c)
    elif mode == "column":
        loss = decoupled_contrastive_loss(pa.t(), pb.t(), tau_c)
    else:
        raise ValueError(f"cluster loss mode must be 'row' or 'column', not {mode!r}")
    if entropy_weight:
        loss = loss + entropy_weight * (entropy_regulariser(pa) + entropy_regulariser(pb))
    return loss


def mean_over_pairs(loss_fn, views: Sequence[torch.Tensor], pairs: Sequence[tuple[int, int]]) -> torch.Tensor:
    """Equal-weight mean of a two-view loss over view pairs (ccli.losses.nt_xent.multicrop_pairs), so the scale does not depend on the crop count (§5.5)."""
    if not pairs:
        raise ValueError("at least one view pair is needed")
    return torch.stack([loss_fn(views[i], views[j]) for i, j in pairs]).mean()
