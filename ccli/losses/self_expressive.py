"""Self-expression loss of the thesis's graph-construction module (selfpaced-and-graph.md §4.2)."""

from __future__ import annotations

import torch


def self_expression_loss(c: torch.Tensor, z: torch.Tensor, lam: float = 1.0, norm: str = "fro") -> torch.Tensor:
    """Eq. 4.2, L_self = ‖C‖ + λ‖Z − CZ‖²_F, rows as samples (ẑ_i = Σ_j C_ij z_j), both terms divided by B (§4.6).

    norm 'fro' is ‖C‖²_F (the spec's default, G1), 'l1' is Σ|C_ij|. The caller masks the
    diagonal of C (G2); this function does not, so it stays a plain formula.
    """
    if norm == "fro":
        reg = (c * c).sum()
    elif norm == "l1":
        reg = c.abs().sum()
    else:
        raise ValueError(f"unknown norm {norm!r}")
    residual = z - c @ z
    return (reg + lam * (residual * residual).sum()) / z.shape[0]
