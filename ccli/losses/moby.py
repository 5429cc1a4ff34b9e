"""The scan+ stage-1 (MoBY-style) contrastive loss: symmetric InfoNCE against queues of target keys.

Queries are L2-normalised online-predictor outputs l, keys L2-normalised target-projector
outputs h (scanplus.md §4.2). Each query's positive is the other view's key; its negatives
are only the entries of a FIFO queue of past target keys, with no in-batch negatives
(scanplus.md §4.4). Logits are computed in float32 under autocast.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def infonce_queue(query: torch.Tensor, positive: torch.Tensor, queue: torch.Tensor, tau: float = 0.2) -> torch.Tensor:
    """scan+ Eq. 10, batch mean: −log e^{s(l,h⁺)/τ} / (e^{s(l,h⁺)/τ} + Σ_{h⁻∈Q} e^{s(l,h⁻)/τ})."""
    q = F.normalize(query.float(), dim=1)
    k = F.normalize(positive.float(), dim=1)
    neg = F.normalize(queue.float(), dim=1)
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ neg.t()], dim=1) / tau
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))


def moby_loss(l_a: torch.Tensor, l_b: torch.Tensor, h_a: torch.Tensor, h_b: torch.Tensor,
              queue_a: torch.Tensor, queue_b: torch.Tensor, tau: float = 0.2) -> torch.Tensor:
    """scan+ Eq. 9: ½·L(l_a, h_b, Q_b) + ½·L(l_b, h_a, Q_a), Q_a / Q_b holding past h_a / h_b (§4.5)."""
    return 0.5 * infonce_queue(l_a, h_b, queue_b, tau) + 0.5 * infonce_queue(l_b, h_a, queue_a, tau)


def ema_momentum(step: int, total_steps: int, base: float = 0.996) -> float:
    """scan+ Eq. 8 (BYOL): m = 1 − (1 − m_base)·(cos(π n / N) + 1) / 2, rising from m_base to 1."""
    if total_steps <= 0:
        return 1.0
    return 1.0 - (1.0 - base) * (math.cos(math.pi * min(step, total_steps) / total_steps) + 1.0) / 2.0
