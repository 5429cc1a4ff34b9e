"""The SCAN clustering objective (Van Gansbeke et al., ECCV 2020), used by scan+ (scanplus.md §6.2).

scan+ Eq. 14-15: an anchor and one of its mined neighbours should get the same cluster
(−log of the dot product of their probability vectors), while an entropy bonus on the
batch-mean prediction keeps every cluster in use. The scan+ filter head (§5.3.6) and the
stage-3 clustering model train on the same objective.
"""

from __future__ import annotations

import torch


def scan_consistency(p_anchor: torch.Tensor, p_neighbor: torch.Tensor) -> torch.Tensor:
    """Eq. 14, first term: −(1/B) Σ_i log⟨p_i, p_j(i)⟩ (the clamp only guards log 0)."""
    agreement = (p_anchor * p_neighbor).sum(1).clamp_min(1e-7)
    return -torch.log(agreement).mean()


def batch_entropy(p: torch.Tensor) -> torch.Tensor:
    """Eq. 15: H(p̄) = −Σ_c p̄_c log p̄_c with p̄ the batch-mean prediction."""
    mean_p = p.mean(0).clamp_min(1e-8)
    return -(mean_p * torch.log(mean_p)).sum()


def scan_loss(anchor_logits: torch.Tensor, neighbor_logits: torch.Tensor, entropy_weight: float) -> torch.Tensor:
    """Eq. 14-15: consistency − λ·H(mean anchor prediction) (λ = 5 in scan+ §6.2)."""
    p_anchor = torch.softmax(anchor_logits, dim=1)
    p_neighbor = torch.softmax(neighbor_logits, dim=1)
    return scan_consistency(p_anchor, p_neighbor) - entropy_weight * batch_entropy(p_anchor)


def scan_loss_over_table(probs: torch.Tensor, table: torch.Tensor, entropy_weight: float,
                         block_rows: int = 4096) -> torch.Tensor:
    """Eq. 14-15 over a whole set: the head-selection criterion of scanplus.md §6.5.

    `probs` [N, C] are one head's softmax outputs on the un-augmented images and `table` [N, q]
    each anchor's neighbours (−1 padding ignored). The consistency term averages
    −log⟨p_i, p_j⟩ over every valid (i, j) pair, i.e. the sum over v ∈ N_x of Eq. 14 divided by
    the number of pairs; the entropy term uses the mean prediction over all N images (Eq. 15).
    Rows go `block_rows` at a time, so the gathered [rows, q, C] block stays small for C = 1000.
    """
    total = torch.zeros((), dtype=torch.float64)
    pairs = 0
    for begin in range(0, len(table), block_rows):
        rows = table[begin:begin + block_rows]
        valid = rows >= 0
        partner = probs[rows.clamp_min(0)]  # [b, q, C]
        agreement = (probs[begin:begin + len(rows), None, :] * partner).sum(-1).clamp_min(1e-7)
        total = total + (torch.log(agreement) * valid).sum().double()
        pairs += int(valid.sum())
    consistency = -(total / max(pairs, 1)).to(probs.dtype)
    return consistency - entropy_weight * batch_entropy(probs)
