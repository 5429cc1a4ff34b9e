"""CCTC's trend-consistency module (cctc-and-cdec.md §8.3, §9, §10): the label queue C and M_S per batch.

State (buffers of `TrendQueue`, so a checkpoint carries them and a resumed run continues them):
    C: int16 [N, w]   the hard label of every sample at the start of each of the last w epochs
                      (column w−1 newest; −1 = not yet filled; §8.3.1)
    P: float32 [N, K] the soft labels of the latest snapshot (the y of S_ij = y_iᵀ y_j)
Never an N × N matrix (§9): for a batch ℬ the exact entries of that epoch's

    M_ij = (1/w) Σ_t 𝕀(C_it = C_jt)   (a −1 slot never agrees, not even with another −1)
    S_ij = P_iᵀ P_j,   M_S = M ⊙ S with a zero diagonal,   W = M_S ⊙ 𝕀(M_S ≥ δ)

are computed from C[ℬ] and P[ℬ] (B² w comparisons). `matrix="M"` is the Table 3 ablation row
(W = M ⊙ 𝕀(M ≥ δ), without S). δ is δ1 before the switch epoch and δ2 after it (§10.2).
"""

from __future__ import annotations

import torch
from torch import nn

TREND_MATRICES = ("MS", "M", "none")


def batch_trend_weights(c_rows: torch.Tensor, p_rows: torch.Tensor, window: int, delta: float,
                        matrix: str = "MS") -> torch.Tensor:
    """W for one batch (§9): c_rows int [B, w] (−1 empty), p_rows [B, K]; no gradient, zero diagonal."""
    with torch.no_grad():
        c = c_rows.long()
        valid = c >= 0
        agree = (c[:, None, :] == c[None, :, :]) & valid[:, None, :] & valid[None, :, :]
        m = agree.float().sum(-1) / window  # divided by w, not by the filled slots (§8.3 rule 3)
        if matrix == "M":
            ms = m
        else:
            p = p_rows.float()
            ms = m * (p @ p.t())
        ms.fill_diagonal_(0.0)
        return ms * (ms >= delta)


def delta_at(epoch: int, delta1: float, delta2: float, switch: int) -> float:
    """§10.2: δ1 for 0-based absolute epochs < switch, δ2 from then on."""
    return delta1 if epoch < switch else delta2


class TrendQueue(nn.Module):
    """The N × w hard-label FIFO and the latest soft labels, as checkpointed buffers."""

    def __init__(self, num_samples: int, window: int, num_clusters: int):
        super().__init__()
        self.window = int(window)
        self.register_buffer("labels", torch.full((num_samples, window), -1, dtype=torch.int16))
        self.register_buffer("soft", torch.zeros((num_samples, num_clusters), dtype=torch.float32))
        self.register_buffer("pushes", torch.zeros((), dtype=torch.long))

    def push(self, probs: torch.Tensor) -> None:
        """§8.3.1: shift every row left by one and put argmax(probs) in the last column; keep probs as P."""
        probs = probs.to(self.soft.device, torch.float32)
        hard = probs.argmax(1).to(torch.int16)
        self.labels.copy_(torch.cat([self.labels[:, 1:], hard[:, None]], dim=1))
        self.soft.copy_(probs)
        self.pushes += 1

    def full(self) -> bool:
        return int(self.pushes) >= self.window

    def weights(self, index: torch.Tensor, delta: float, matrix: str = "MS") -> torch.Tensor:
        index = index.to(self.labels.device)
        return batch_trend_weights(self.labels[index], self.soft[index], self.window, delta, matrix)

    def nbytes(self) -> int:
        return self.labels.numel() * self.labels.element_size()
