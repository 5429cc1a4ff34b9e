"""NT-Xent, the normalised-temperature cross-entropy of SimCLR (Chen et al., ICML 2020).

For a batch of N images with two views a, b, each of the 2N projections is an anchor whose
positive is the other view of the same image and whose negatives are the other 2N − 2
projections (dcacn.md §5.1, the corrected reading of Eq. 5). Similarities are cosine, computed
in float32 even under autocast: exp(s/τ) at τ = 0.1 loses too much precision in bf16.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def nt_xent(a: torch.Tensor, b: torch.Tensor, tau: float = 0.5) -> torch.Tensor:
    """SimCLR Eq. 1 averaged over all 2N anchors: −log e^{s(i,i⁺)/τ} / Σ_{k≠i} e^{s(i,k)/τ}."""
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"nt_xent needs two [N, D] tensors of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    n = a.shape[0]
    if n < 2:
        raise ValueError("nt_xent needs at least 2 images per batch (negatives are the other images)")
    z = F.normalize(torch.cat([a, b], dim=0).float(), dim=1)
    logits = (z @ z.t()) / tau
    # An anchor is never its own negative: −inf on the diagonal drops it from the softmax.
    logits.fill_diagonal_(float("-inf"))
    positive = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(a.device)
    return F.cross_entropy(logits, positive)


def nt_xent_multi(views: Sequence[torch.Tensor], pairs: Sequence[tuple[int, int]], tau: float = 0.5) -> torch.Tensor:
    """Multi-crop NT-Xent (dcacn.md §5.5 pairing): the mean of Eq. 1 over the listed view pairs."""
    if not pairs:
        raise ValueError("nt_xent_multi needs at least one pair of views")
    return torch.stack([nt_xent(views[i], views[j], tau) for i, j in pairs]).mean()


def multicrop_pairs(n_global: int, n_local: int) -> list[tuple[int, int]]:
    """Global–global pairs plus every global–local pair; no local–local pairs (SwAV/DINO, dcacn.md §5.5)."""
    pairs = [(i, j) for i in range(n_global) for j in range(i + 1, n_global)]
    pairs += [(g, n_global + l) for g in range(n_global) for l in range(n_local)]
    return pairs
