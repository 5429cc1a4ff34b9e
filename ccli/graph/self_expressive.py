"""Self-expression coefficient graphs (selfpaced-and-graph.md §2.2, §4.2, §4.6).

Rows are samples: each z_i is written as Σ_j C_ij z_j, C has a zero diagonal, and the
graph is A = C + Cᵀ (signed, thesis Ch. 4) or |C| + |Cᵀ| (Ch. 2). An N×N C is
infeasible for N in the tens of thousands, so the data are split once (seeded) into
chunks of about B points, each chunk gets its own B×B block of C (a block-diagonal C,
the spec's `chunk` mode), and each block is sparsified to its top entries per row
before the next one is computed: memory is O(B² + N·topk) whatever N is.

Two ways to get a block, both minimising ‖C‖ + λ‖Z − CZ‖²_F with diag(C) = 0:
- closed form (Frobenius norm): with G = ZZᵀ and Q = (I + λG)⁻¹, the unconstrained
  minimiser is C = I − Q, and the minimiser under diag(C) = 0 is C = I − diag(Q)⁻¹Q
  (row i is e_i − Q_i/Q_ii; Lagrange condition on each row, LSR-style);
- learned: a trainable block with a masked diagonal optimised by Adam, as the
  self-expression layer is (spec §4.6), which also allows the L1 norm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.sparse as sp

from ccli.errors import BadInput

MODES = ("closed", "learned")
DIAGONALS = ("exact", "zero")
AFFINITIES = ("signed", "abs")
NORMS = ("fro", "l1")


@dataclass(frozen=True)
class SelfExpressiveParams:
    mode: str = "closed"
    lam: float = 1.0
    chunk_size: int = 1000
    topk: int = 10
    affinity: str = "signed"
    diagonal: str = "exact"  # closed form: exact constrained minimiser, or unconstrained then zeroed
    norm: str = "fro"  # learned form only; the closed form is Frobenius by construction
    steps: int = 200
    lr: float = 1e-3
    init: float = 1e-8
    normalize: bool = True
    seed: int = 0
    device: str = "cpu"


def check_params(p: SelfExpressiveParams) -> None:
    for value, allowed, option in (
        (p.mode, MODES, "--se-mode"),
        (p.diagonal, DIAGONALS, "--se-diagonal"),
        (p.affinity, AFFINITIES, "--affinity"),
        (p.norm, NORMS, "--c-norm"),
    ):
        if value not in allowed:
            raise BadInput(f"{option} {value} is not one of {', '.join(allowed)}.")
    if p.mode == "closed" and p.norm != "fro":
        raise BadInput("--c-norm l1 has no closed form; use it with --se-mode learned.")
    if p.lam <= 0:
        raise BadInput(f"--lam {p.lam} must be positive.")
    if p.chunk_size < 2:
        raise BadInput(f"--chunk-size {p.chunk_size} must be at least 2.")
    if p.topk < 1:
        raise BadInput(f"--se-topk {p.topk} must be at least 1.")


def ridge_q(z: np.ndarray, lam: float) -> np.ndarray:
    """Q = (I_B + λ Z Zᵀ)⁻¹ in float64, via the d×d system when d < B (Woodbury), else the B×B one."""
    z = np.asarray(z, dtype=np.float64)
    b, d = z.shape
    if d < b:
        # (I + λZZᵀ)⁻¹ = I − λ Z (I_d + λ ZᵀZ)⁻¹ Zᵀ: O(B·d² + B²·d) instead of O(B³).
        small = np.eye(d) + lam * (z.T @ z)
        solved = np.linalg.solve(small, z.T)  # (I_d + λZᵀZ)⁻¹ Zᵀ, d×B
        q = -lam * (z @ solved)
        q[np.diag_indices(b)] += 1.0
        return q
    return np.linalg.inv(np.eye(b) + lam * (z @ z.T))


def ridge_coefficients(z: np.ndarray, lam: float, diagonal: str = "exact") -> np.ndarray:
    """Closed-form minimiser of ‖C‖²_F + λ‖Z − CZ‖²_F (rows as samples) with a zero diagonal."""
    q = ridge_q(z, lam)
    if diagonal == "exact":
        c = -q / np.diag(q)[:, None]
        c[np.diag_indices(len(c))] = 0.0  # = 1 − Q_ii/Q_ii exactly; set to avoid rounding
        return c
    c = -q
    c[np.diag_indices(len(c))] += 1.0  # unconstrained minimiser I − Q
    c[np.diag_indices(len(c))] = 0.0
    return c


def learned_coefficients(z: np.ndarray, params: SelfExpressiveParams, seed: int) -> np.ndarray:
    """A B×B self-expression layer with a masked diagonal, trained by Adam on fixed features."""
    from ccli.neighbors.knn_torch import torch_device
    from ccli.threads import small_kernel_threads

    device = torch_device(params.device)
    with small_kernel_threads(device):
        return _learn_block(z, params, seed, device)


def _learn_block(z: np.ndarray, params: SelfExpressiveParams, seed: int, device) -> np.ndarray:
    import torch

    from ccli.losses.self_expressive import self_expression_loss

    torch.manual_seed(seed)
    zt = torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32)).to(device)
    b = zt.shape[0]
    off_diagonal = 1.0 - torch.eye(b, device=device)
    # DSC-Net's initialisation: a tiny constant, zero on the diagonal.
    weight = torch.full((b, b), params.init, device=device, requires_grad=True)
    optimiser = torch.optim.Adam([weight], lr=params.lr)
    for _ in range(params.steps):
        c = weight * off_diagonal
        loss = self_expression_loss(c, zt, params.lam, params.norm)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        return (weight * off_diagonal).double().cpu().numpy()


def affinity(c: np.ndarray, kind: str = "signed") -> np.ndarray:
    """A = C + Cᵀ (thesis Ch. 4) or |C| + |Cᵀ| (Ch. 2), zero diagonal."""
    a = c + c.T if kind == "signed" else np.abs(c) + np.abs(c.T)
    a[np.diag_indices(len(a))] = 0.0
    return a


def top_entries_mask(a: np.ndarray, topk: int) -> np.ndarray:
    """Entries that are among the top-k of their row or of their column (keeps A symmetric)."""
    b = len(a)
    if topk >= b - 1:
        mask = np.ones_like(a, dtype=bool)
    else:
        scored = a.copy()
        scored[np.diag_indices(b)] = -np.inf  # the diagonal is never an edge
        top = np.argpartition(-scored, topk - 1, axis=1)[:, :topk]
        mask = np.zeros_like(a, dtype=bool)
        np.put_along_axis(mask, top, True, axis=1)
        mask |= mask.T
    mask[np.diag_indices(b)] = False
    return mask


def chunks(n: int, chunk_size: int, seed: int) -> list[np.ndarray]:
    """A seeded partition of range(n) into ⌈n/B⌉ chunks whose sizes differ by at most one."""
    perm = np.random.default_rng(seed).permutation(n)
    return np.array_split(perm, max(1, math.ceil(n / chunk_size)))


def self_expressive_graph(
    z: np.ndarray,
    params: SelfExpressiveParams,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> sp.csr_matrix:
    """Sparse symmetric N×N affinity from chunk-wise self-expression (see the module docstring)."""
    check_params(params)
    n = len(z)
    if n < 2:
        raise BadInput("a self-expressive graph needs at least 2 points.")
    rows, cols, vals = [], [], []
    parts = chunks(n, params.chunk_size, params.seed)
    for number, members in enumerate(parts):
        members = np.sort(members)  # row order inside a chunk does not matter; sorted is reproducible
        zb = np.asarray(z[members], dtype=np.float64)
        if params.normalize:
            norms = np.linalg.norm(zb, axis=1, keepdims=True)
            zb = np.divide(zb, norms, out=np.zeros_like(zb), where=norms > 0)
        if params.mode == "closed":
            c = ridge_coefficients(zb, params.lam, params.diagonal)
        else:
            c = learned_coefficients(zb, params, seed=params.seed + number)
        a = affinity(c, params.affinity)
        mask = top_entries_mask(a, params.topk)
        r, q = np.nonzero(mask)
        rows.append(members[r])
        cols.append(members[q])
        vals.append(a[r, q].astype(np.float32))
        progress(number + 1, len(parts))
    graph = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n), dtype=np.float32
    )
    graph.sort_indices()
    return graph
