"""Top-k neighbour search over a feature matrix: faiss (CPU or GPU) or an exact torch matmul.

Both backends search the queries block by block, so the largest temporary is
`block_rows × N` similarities (torch) or faiss's own bounded buffers, never N×N. Results
come out as a stream of row blocks that the caller can write straight to disk.

Conventions shared by every backend:
- metric 'cosine': rows are L2-normalised, scores are cosine similarities, descending;
- metric 'l2': scores are Euclidean distances (not squared), ascending;
- `exclude_self`: row i never lists i. Self is removed by id, not by position, so a
  duplicate point ranked above i is kept as a genuine neighbour.

This module is the entry point: it checks the request, prepares the rows for the metric and
hands them to a backend (ccli.neighbors.knn_torch, ccli.neighbors.knn_faiss). SearchParams
lives in ccli.neighbors.params, below all three.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from ccli.errors import BadInput, CcliError
from ccli.neighbors.knn_faiss import FAISS_BLOCK_ROWS, faiss_available, faiss_gpu_count, search_faiss
from ccli.neighbors.knn_torch import search_torch
from ccli.neighbors.params import BACKENDS, INDEXES, METRICS, PRUNE, SearchParams


def resolve_backend(backend: str, index: str, device: str = "auto") -> str:
    """'auto' → faiss for approximate indexes or when faiss sees a GPU; exact search on a CPU → torch.

    On a CPU the exact torch matmul + top-k measured about twice as fast as faiss's flat
    index from the faiss-gpu wheel (BENCHMARKS.md), with identical results.
    """
    if backend not in BACKENDS:
        raise BadInput(f"--backend {backend} is not one of {', '.join(BACKENDS)}.")
    if index not in INDEXES:
        raise BadInput(f"--index {index} is not one of {', '.join(INDEXES)}.")
    if backend == "auto":
        wants_gpu = not str(device).startswith("cpu")
        if index != "flat" or (wants_gpu and faiss_gpu_count() > 0):
            backend = "faiss" if faiss_available() else "torch"
        else:
            backend = "torch"
    if backend == "faiss" and not faiss_available():
        raise CcliError("--backend faiss was asked for but faiss cannot be imported; use --backend torch.")
    if backend == "torch" and index != "flat":
        raise BadInput(f"--index {index} needs --backend faiss; the torch backend is exact (--index flat).")
    return backend


def check_k(k: int, n: int, source: str) -> None:
    """k must leave at least one non-neighbour: k ≥ N is refused (self is excluded by default)."""
    if k < 1:
        raise BadInput(f"-k {k} must be at least 1.")
    if k >= n:
        raise BadInput(f"-k {k} is not smaller than the number of points in {source} (N={n}).")


def normalize_rows(x: np.ndarray, copy: bool = True) -> np.ndarray:
    """Unit-L2 float32 rows (on a copy unless `copy=False` and x is float32); a zero row stays zero."""
    x = _float32(x, copy)
    # Row blocks: np.linalg.norm over the whole matrix would allocate an N×D temporary.
    for start in range(0, len(x), 65536):
        block = x[start : start + 65536]
        norms = np.sqrt(np.einsum("nd,nd->n", block, block))[:, None]
        np.divide(block, norms, out=block, where=norms > 0)
    return x


def prepare(x: np.ndarray, metric: str, copy: bool = True) -> np.ndarray:
    """Rows ready for the metric: unit-normalised for cosine, float32 for l2."""
    if metric not in METRICS:
        raise BadInput(f"--metric {metric} is not one of {', '.join(METRICS)}.")
    if metric == "cosine":
        return normalize_rows(x, copy=copy)
    return _float32(x, copy)


def _float32(x: np.ndarray, copy: bool) -> np.ndarray:
    """C-contiguous float32; a copy when asked, otherwise only when the layout needs one."""
    return np.array(x, dtype=np.float32, order="C", copy=True) if copy else np.ascontiguousarray(x, dtype=np.float32)


def search(x: np.ndarray, params: SearchParams, copy: bool = True,
           rows: tuple[int, int] | None = None) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Stream (start_row, indices int64 [b,k], scores float32 [b,k]) for every row of `x` against all of `x`.

    `copy=False` lets a caller that owns a float32 `x` have it normalised in place (one
    N×D matrix in memory instead of two). `rows=(start, stop)` searches only those query rows
    (still against every row): a torchrun rank's shard. Each query row's answer is the same
    whichever rows are searched with it.
    """
    check_k(params.k, len(x), "the features")
    if params.prune not in PRUNE:
        raise BadInput(f"prune={params.prune!r} is not one of {', '.join(PRUNE)}.")
    base = prepare(x, params.metric, copy=copy)
    queries = (0, len(base)) if rows is None else rows
    if params.backend == "torch":
        yield from search_torch(base, params, queries)
    elif params.backend == "faiss":
        yield from search_faiss(base, params, queries)
    else:
        raise ValueError(f"unresolved backend {params.backend!r}")


def shard_grid(params: SearchParams) -> int:
    """Rows a shard of the queries must keep whole for its answers to be those of one process.

    The torch backend rescores every candidate in float64 from the rows themselves, so a row's
    neighbours and scores do not depend on the rows searched with it: any split will do (1).
    faiss's float32 scores come from BLAS tiles whose shape follows the queries of one search
    call; two near-tied neighbours can swap in another tiling, so a shard is made of whole calls.
    """
    if params.backend == "faiss":
        return params.block_rows or FAISS_BLOCK_ROWS
    return 1


def knn(x: np.ndarray, params: SearchParams, copy: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The whole [N,k] result in memory (tests, small N, and the multi-view cascade)."""
    n = len(x)
    indices = np.empty((n, params.k), dtype=np.int64)
    scores = np.empty((n, params.k), dtype=np.float32)
    for start, idx, sc in search(x, params, copy=copy):
        indices[start : start + len(idx)] = idx
        scores[start : start + len(sc)] = sc
    return indices, scores
