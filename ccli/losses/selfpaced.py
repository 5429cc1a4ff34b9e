"""Losses of `selfpaced` (thesis 001, Ch. 3; selfpaced-and-graph.md §3.5–3.6).

Stage 1 trains the encoder with an augmentation-consistency term and a soft-assignment-weighted
centre loss around centres that are recomputed, not learned; stage 2 trains the softmax head
with a contrastive loss over thresholded pairwise similarities whose denominator holds the
negatives only. Rows are samples throughout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def augmentation_loss(h: torch.Tensor, h_aug: torch.Tensor, literal: bool = False) -> torch.Tensor:
    """Eq. 3.1 with the spec's sign fix (S1): L' = (1/B) Σ_i [1 − s(h_i, h'_i)], s the cosine.

    The thesis writes "minimise the similarity" of f(X) and f(T(X)); `literal=True` returns
    that, (1/B) Σ_i s(h_i, h'_i), which pushes a sample away from its own augmentation.
    """
    cos = F.cosine_similarity(h, h_aug, dim=1)
    return cos.mean() if literal else (1.0 - cos).mean()


def student_t(h: torch.Tensor, centres: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Eq. 3.3 (DEC's q): p_ik ∝ (1 + ‖h_i − μ_k‖²/α)^(−(α+1)/2), rows summing to 1."""
    d2 = torch.cdist(h, centres).pow(2)
    logits = -(alpha + 1.0) / 2.0 * torch.log1p(d2 / alpha)
    return torch.softmax(logits, dim=1)


def centre_loss(h: torch.Tensor, centres: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Eq. 3.2 averaged over the batch (S9 and §3.5: p held constant): (1/B) Σ_i Σ_k p_ik ‖h_i − μ_k‖²."""
    d2 = (h[:, None, :] - centres[None, :, :]).pow(2).sum(-1)
    return (p.detach() * d2).sum(1).mean()


def weighted_centres(h_aug: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Eq. 3.4: μ_k = Σ_i p_ik h'_i / Σ_i p_ik, weights from the original samples (S10), features of their augmentations."""
    return (p.t() @ h_aug) / p.sum(0).clamp_min(1e-12)[:, None]


def threshold_pairs(sim: torch.Tensor, zeta: float, gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """P(i) = {p ≠ i : Sim_ip ≥ ζ}, F(i) = {f ≠ i : Sim_if ≤ γ} (§3.6, S7: i is in neither); between them ignored."""
    off = ~torch.eye(len(sim), dtype=torch.bool, device=sim.device)
    return (sim >= zeta) & off, (sim <= gamma) & off


def with_views(positives: torch.Tensor, negatives: torch.Tensor, views: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs of B images → pairs of their V·B view rows (view-major): a pair holds for every view of both images,
    and each row's other views of the same image are positives (augmentation consistency); no row pairs with itself."""
    b = len(positives)
    same = torch.eye(b, dtype=torch.bool, device=positives.device).repeat(views, views)
    own = torch.eye(b * views, dtype=torch.bool, device=positives.device)
    return (positives.repeat(views, views) | same) & ~own, negatives.repeat(views, views) & ~same


def negatives_only_contrast(z: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor,
                            tau: float) -> torch.Tensor:
    """Eq. 3.7–3.9 (and Eq. 4.4–4.6): mean over anchors of −(1/|P(i)|) Σ_p log[e^{s_ip/τ} / Σ_{f∈F(i)} e^{s_if/τ}].

    s is the cosine similarity of rows of z; the denominator sums over the negatives only (S8).
    Anchors without a positive or without a negative are skipped (§3.6); none left gives 0.
    """
    zn = F.normalize(z.float() if z.dtype in (torch.float16, torch.bfloat16) else z, dim=1)
    logits = zn @ zn.t() / tau
    usable = positives.any(1) & negatives.any(1)
    if not bool(usable.any()):
        return logits.sum() * 0.0
    neg_lse = torch.logsumexp(logits.masked_fill(~negatives, float("-inf")), dim=1)
    pos = positives.to(logits.dtype)
    pos_mean = (logits * pos).sum(1) / pos.sum(1).clamp_min(1.0)
    return (neg_lse - pos_mean)[usable].mean()


def threshold_at(progress: float, final: float, start: float, schedule: str) -> float:
    """A pair threshold at training progress t ∈ [0, 1]: `fixed` is the thesis's constant, `linear` moves start → final."""
    if schedule == "fixed":
        return final
    t = min(1.0, max(0.0, progress))
    return start + (final - start) * t
