"""Contrastive losses of `graph` (thesis 001, Ch. 4; selfpaced-and-graph.md §4.3–4.4).

The pairs come from the self-expression graph A = C + Cᵀ (signed, G3): an anchor's positives
are the k largest entries of its row, its negatives every other sample (the instance level,
Eq. 4.4–4.6), and Y′ holds each sample's strongest neighbour's soft assignment (the cluster
level, Eq. 4.7). Rows are samples; A's diagonal is never an edge.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ccli.losses.selfpaced import negatives_only_contrast


def affinity(c: torch.Tensor, kind: str = "signed") -> torch.Tensor:
    """A = C + Cᵀ (thesis Ch. 4) or |C| + |Cᵀ| (Ch. 2), zero diagonal."""
    a = c + c.t() if kind == "signed" else c.abs() + c.abs().t()
    return a * (1.0 - torch.eye(len(a), dtype=a.dtype, device=a.device))


def topk_positives(a: torch.Tensor, k: int, valid: torch.Tensor | None = None) -> torch.Tensor:
    """P(i) = the k largest entries of row i of A, i excluded (§4.3 default, G6); `valid` masks out non-edges."""
    b = len(a)
    scored = a.masked_fill(torch.eye(b, dtype=torch.bool, device=a.device), float("-inf"))
    if valid is not None:
        scored = scored.masked_fill(~valid, float("-inf"))
    k = min(int(k), b - 1)
    top = scored.topk(k, dim=1).indices
    mask = torch.zeros_like(a, dtype=torch.bool).scatter_(1, top, True)
    return mask & torch.isfinite(scored)


def adaptive_positives(a: torch.Tensor, k: int) -> torch.Tensor:
    """The thesis's base-plus-cap rule (§4.3, `pos_rule: adaptive`): {p : A_ip > 0} while |P| ≤ |F|, else the top k."""
    b = len(a)
    off = ~torch.eye(b, dtype=torch.bool, device=a.device)
    base = (a > 0) & off
    capped = topk_positives(a, k)
    too_many = base.sum(1) > (b - 1 - base.sum(1))
    return torch.where(too_many[:, None], capped, base)


def graph_instance_loss(h: torch.Tensor, positives: torch.Tensor, tau: float) -> torch.Tensor:
    """Eq. 4.4–4.6: negatives-only contrast with F(i) = every sample but i and P(i), cosine on rows of h, τ1."""
    off = ~torch.eye(len(h), dtype=torch.bool, device=h.device)
    return negatives_only_contrast(h, positives, off & ~positives, tau)


def strongest_neighbour(a: torch.Tensor) -> torch.Tensor:
    """n(i) = argmax_{j ≠ i} A_ij (§4.4): the row of Y′ is Y's row of this neighbour."""
    b = len(a)
    return a.masked_fill(torch.eye(b, dtype=torch.bool, device=a.device), float("-inf")).argmax(1)


def graph_cluster_loss(y: torch.Tensor, y_neighbour: torch.Tensor, tau: float) -> torch.Tensor:
    """Eq. 4.7: −(1/K) Σ_i log[e^{s(cl_i, cl′_i)/τ2} / Σ_j e^{s(cl_i, cl′_j)/τ2}], cl the columns of Y and Y′ (one direction)."""
    if y.dtype in (torch.float16, torch.bfloat16):
        y, y_neighbour = y.float(), y_neighbour.float()
    cl, cl2 = F.normalize(y.t(), dim=1), F.normalize(y_neighbour.t(), dim=1)
    logits = cl @ cl2.t() / tau
    return F.cross_entropy(logits, torch.arange(len(logits), device=logits.device))


def two_view_positives(positives: torch.Tensor) -> torch.Tensor:
    """`instance_augment` (PROPOSED): the 2B×2B positives of two views of B samples, rows/columns [view 1; view 2].

    An anchor's positives are its own other view and its A-positives in both views; its own row in its
    own view is never an edge (graph_instance_loss excludes the diagonal)."""
    eye = torch.eye(len(positives), dtype=torch.bool, device=positives.device)
    cross = positives | eye
    return torch.cat([torch.cat([positives, cross], 1), torch.cat([cross, positives], 1)], 0)


def two_view_instance_loss(h1: torch.Tensor, h2: torch.Tensor, positives: torch.Tensor, tau: float) -> torch.Tensor:
    """Eq. 4.4–4.6 over both views' embeddings, with `two_view_positives` as P(i) and every other row as F(i)."""
    return graph_instance_loss(torch.cat([h1, h2]), two_view_positives(positives), tau)
