"""What one top-k search is asked to do: SearchParams and the names it accepts.

The entry point (ccli.neighbors.knn) and both backends (knn_torch, knn_faiss) read these, so
they sit below all three and import nothing of them.
"""

from __future__ import annotations

from dataclasses import dataclass

METRICS = ("cosine", "l2")
BACKENDS = ("auto", "faiss", "torch")
INDEXES = ("flat", "ivf", "hnsw")
PRUNE = ("auto", "on", "off")


@dataclass(frozen=True)
class SearchParams:
    """How to search; everything here except `block_rows`/`device`/`prune` can change the result."""

    k: int
    metric: str = "cosine"
    backend: str = "faiss"  # resolved: 'faiss' or 'torch'
    index: str = "flat"
    nlist: int = 0  # IVF lists; 0 = 2·√N
    nprobe: int = 16
    hnsw_m: int = 32
    ef_construction: int = 40
    ef_search: int = 64
    exclude_self: bool = True
    seed: int = 0
    block_rows: int = 0  # 0 = automatic
    device: str = "cpu"
    # Exact torch search on a CPU: score only the k-means lists that can hold a neighbour
    # (ccli.neighbors.knn_pruned). 'auto': from knn_pruned.MIN_N rows, given up when the first
    # blocks show no pruning; 'on': always (no give-up); 'off': the plain blocked search.
    prune: str = "auto"
