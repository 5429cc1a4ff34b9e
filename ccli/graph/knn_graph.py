"""GCC's kNN graph (cctc-and-cdec.md §7): symmetric adjacency, normalised Laplacian, node weights.

Everything is sparse and O(N·k): the adjacency is assembled from the [N,k] neighbour table
as COO pairs, so no N×N matrix ever exists.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ccli.errors import BadInput


def neighbor_table(indices: np.ndarray, k: int, *, has_self: bool = False, source: str = "the neighbours") -> np.ndarray:
    """The first k genuine neighbours per row: self (by id) and −1 padding removed first."""
    n, stored = indices.shape
    valid = (indices >= 0) & (indices != np.arange(n)[:, None])
    available = int(valid.sum(1).min()) if n else 0
    if k > available:
        where = f"{source} stores only {available} neighbours for some points" + (" once self is removed" if has_self else "")
        raise BadInput(f"--knn {k} asks for more neighbours than {where}; rebuild them with a larger -k.")
    # A stable argsort of ~valid moves the invalid entries to the end and keeps rank order.
    order = np.argsort(~valid, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(indices, order, axis=1).astype(np.int64)


def knn_adjacency(table: np.ndarray, n: int | None = None) -> sp.csr_matrix:
    """A_ij = 1 if j ∈ N_k(i) or i ∈ N_k(j), i ≠ j (GCC's symmetric binary kNN graph)."""
    n = len(table) if n is None else n
    rows = np.repeat(np.arange(len(table), dtype=np.int64), table.shape[1])
    cols = table.reshape(-1).astype(np.int64)
    keep = (cols >= 0) & (cols != rows)
    rows, cols = rows[keep], cols[keep]
    directed = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n, n))
    sym = directed.maximum(directed.T).tocsr()  # union of both directions, still 0/1
    sym.sort_indices()
    return sym


def degrees(adjacency: sp.csr_matrix) -> np.ndarray:
    return np.asarray(adjacency.sum(axis=1)).reshape(-1)


def normalized_laplacian(adjacency: sp.csr_matrix) -> sp.csr_matrix:
    """L = I − D^{-1/2} A D^{-1/2} (cctc-and-cdec.md §7.2); an isolated node gets L_ii = 0, as in scipy."""
    d = degrees(adjacency)
    inv_sqrt = np.zeros_like(d, dtype=np.float64)
    np.divide(1.0, np.sqrt(d), out=inv_sqrt, where=d > 0)
    scale = sp.diags(inv_sqrt)
    lap = sp.diags((d > 0).astype(np.float64)) - scale @ adjacency @ scale
    lap = sp.csr_matrix(lap, dtype=np.float32)
    lap.sort_indices()
    return lap


def gcc_node_weights(adjacency: sp.csr_matrix, num_pos: int = 3) -> np.ndarray:
    """GCC's ω_j = √(num_pos / |𝒩(j)|), 𝒩(j) = {j} ∪ neighbours of j in the symmetric graph.

    GCC's `MemoryBank.laplace_transform` (cctc-and-cdec.md §7.3) builds 𝒩(j) from a
    (k+1)-NN table that lists j itself first, so |𝒩(j)| = 1 + deg(j).
    """
    return np.sqrt(num_pos / (1.0 + degrees(adjacency))).astype(np.float32)


def edge_purity(adjacency: sp.csr_matrix, labels: np.ndarray | None) -> float | None:
    """Fraction of edges (both ends labelled) that join two points of the same class."""
    if labels is None:
        return None
    coo = adjacency.tocoo()
    a, b = labels[coo.row], labels[coo.col]
    known = (a >= 0) & (b >= 0)
    return float((a[known] == b[known]).mean()) if known.any() else None
