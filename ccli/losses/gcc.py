"""GCC's losses as CCTC uses them (cctc-and-cdec.md §8.1–8.2; GCC, Zhong et al. ICCV 2021).

- `warm_instance_loss`: the SimCLR warm-up form (§8.1, "warm-up form"): anchor-view queries only.
- `rgc_loss`: the graph-weighted instance InfoNCE of CCTC §2.4.1 (spec Eq. L^gcc_InfoNCE): the
  other view and the anchor's first kNN-table entries, scaled by their node weights ω, are the
  positives; the denominator holds only negatives (plus the anchor's self term, GCC's quirk).
- `agc_cluster_loss`: CCTC Eq. (1), L_clu: a column-wise contrast over the K clusters of two
  soft-assignment matrices, one-directional, plus λ·L_au with L_au = log K + Σ p log p.

Similarities are computed in float32 even under autocast (exp(s/τ) at τ = 0.1).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F


def _f32(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def warm_instance_loss(u: torch.Tensor, v: torch.Tensor, tau: float) -> torch.Tensor:
    """Spec §8.1 warm-up form: −(1/B) Σ_i log e^{u_i·v_i/τ} / Σ_a (e^{u_i·u_a/τ} + e^{u_i·v_a/τ}).

    u, v: [B, D] unit embeddings of the anchor and the other view. The denominator keeps the
    positive and the self term (GCC's code, used without neighbours).
    """
    u, v = _f32(u), _f32(v)
    logits = torch.cat([u @ u.t(), u @ v.t()], dim=1) / tau  # [B, 2B]
    positive = torch.diagonal(u @ v.t()) / tau
    return (torch.logsumexp(logits, dim=1) - positive).mean()


def rgc_loss(u: torch.Tensor, v: torch.Tensor, r: torch.Tensor, omega: torch.Tensor, tau: float,
             exclude_self: bool = False) -> torch.Tensor:
    """Spec §8.1, L^gcc_InfoNCE (CCTC §2.4.1 as GCC's code computes it):

        −(1/B) Σ_i log [ e^{u_i·v_i/τ} + Σ_t ω_{i,t} e^{u_i·r_{i,t}/τ} ]
                       / [ Σ_a e^{u_i·u_a/τ} + Σ_{a≠i} e^{u_i·v_a/τ} + Σ_t Σ_{a≠i} e^{u_i·r_{a,t}/τ} ]

    u, v: [B, D] unit embeddings of the two views; r: [B, T, D] the neighbours' embeddings
    *already scaled* by their node weights (r_{i,t} = ω_{i,t} z(aug(x_{n_{i,t}}))); omega: [B, T].
    `exclude_self` drops the a = i term of the first denominator sum (off in GCC's code).
    """
    u, v, r, omega = _f32(u), _f32(v), _f32(r), _f32(omega)
    b, t, d = r.shape
    same = torch.eye(b, dtype=torch.bool, device=u.device)
    uu = u @ u.t() / tau
    if exclude_self:
        uu = uu.masked_fill(same, float("-inf"))
    uv = (u @ v.t() / tau).masked_fill(same, float("-inf"))
    ur = (u @ r.reshape(b * t, d).t() / tau).reshape(b, b, t).masked_fill(same[:, :, None], float("-inf"))
    denominator = torch.logsumexp(torch.cat([uu, uv, ur.reshape(b, b * t)], dim=1), dim=1)
    own = torch.einsum("bd,btd->bt", u, r) / tau  # [B, T]
    positive = (u * v).sum(1, keepdim=True) / tau
    # log(e^{u·v/τ} + Σ_t ω e^{own_t}); a weight ω = 0 adds nothing (log 0 = −inf in the logsumexp).
    numerator = torch.logsumexp(torch.cat([positive, own + torch.log(omega.clamp_min(0.0))], dim=1), dim=1)
    return (denominator - numerator).mean()


def balance_term(p: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """CCTC Eq. (1)'s L_au = log K + Σ_k p_k log p_k, p_k = (1/B) Σ_b P_bk (0 when uniform, log K when one-hot)."""
    p = _f32(p)
    marginal = p.mean(0).clamp_min(eps)
    return math.log(p.shape[1]) + (marginal * torch.log(marginal)).sum()


def agc_cluster_loss(p1: torch.Tensor, p2: torch.Tensor, tau: float, lam: float,
                     p_balance: Optional[torch.Tensor] = None) -> torch.Tensor:
    """CCTC Eq. (1), L_clu = −(1/K) Σ_k log e^{cos(c¹_k, c²_k)/τ_y} / Σ_k' e^{cos(c¹_k, c²_k')/τ_y} + λ L_au.

    p1, p2: [B, K] soft assignments of view 1 (queries) and view 2 (GCC: an augmented kNN
    neighbour). L_au is taken on view 1's batch marginal (GCC's AGCLoss), or on `p_balance`.
    """
    p1, p2 = _f32(p1), _f32(p2)
    logits = F.normalize(p1.t(), dim=1) @ F.normalize(p2, dim=0) / tau  # [K, K] column cosines
    target = torch.arange(p1.shape[1], device=p1.device)
    loss = F.cross_entropy(logits, target)
    if lam:
        loss = loss + lam * balance_term(p1 if p_balance is None else p_balance)
    return loss
