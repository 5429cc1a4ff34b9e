"""The `ccli neighbors` config: what goes into the content key, and its defaults.

Where the work runs (device, block sizes) is not a field, and `keyed_config` drops the
backend and `prune` (which lists the exact search scores) too: exact search gives the same neighbours from faiss and torch, and the
approximate indexes exist only in faiss. So neighbours computed on a GPU server and on a
laptop share a key; the artifact's `backend` attribute still records which one ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class NeighborsConfig:
    k: int = 20
    metric: Literal["cosine", "l2"] = "cosine"
    backend: Literal["auto", "faiss", "torch"] = "auto"
    index: Literal["flat", "ivf", "hnsw"] = "flat"
    # IVF: nlist 0 means 2·√N; nprobe lists are visited per query.
    nlist: int = 0
    nprobe: int = 16
    # HNSW graph degree and beam widths (construction / search).
    hnsw_m: int = 32
    ef_construction: int = 40
    ef_search: int = 64
    include_self: bool = False
    seed: int = 0
    # Exact torch search on a CPU: score only the k-means lists that can hold a neighbour
    # (ccli.neighbors.knn_pruned, issue 17). Never changes the result, so not in the key.
    # 'auto' (PROPOSED, BENCHMARKS.md "issue 17: pruned exact kNN"): from 20,000 rows, given up
    # when the first blocks show little pruning; 'on': always; 'off': the plain blocked search.
    prune: Literal["auto", "on", "off"] = "auto"
    # scan+ multi-view cascade (scanplus.md §5): k plays the role of q.
    multi_view: bool = False
    mult1: int = 4
    mult2: int = 2
    clusters: int = 0  # 0 = the number of distinct known labels
    strong_mode: Literal["both", "anchor_only"] = "both"
    strong_draws: int = 1
    filter_head: Literal["scan_warmup", "kmeans"] = "scan_warmup"
    filter_score: Literal["dot", "anchor_class", "confidence"] = "dot"
    kmeans_temperature: float = 0.1
    head_hidden: int = 512
    head_epochs: int = 30
    head_lr: float = 1e-4
    head_batch: int = 512
    head_entropy_weight: float = 5.0


# Fields that only matter for one mode; dropped from the key when that mode is off, so a
# plain kNN's key does not change when a cascade default changes.
MULTI_VIEW_FIELDS = (
    "mult1",
    "mult2",
    "clusters",
    "strong_mode",
    "strong_draws",
    "filter_head",
    "filter_score",
    "kmeans_temperature",
    "head_hidden",
    "head_epochs",
    "head_lr",
    "head_batch",
    "head_entropy_weight",
)
INDEX_FIELDS = {
    "flat": (),
    "ivf": ("nlist", "nprobe", "seed"),
    "hnsw": ("hnsw_m", "ef_construction", "ef_search"),
}


def keyed_config(config: dict) -> dict:
    """The part of a resolved config that determines the result (see the module docstring)."""
    out = dict(config)
    out.pop("backend")
    out.pop("prune")
    for name in ("nlist", "nprobe", "hnsw_m", "ef_construction", "ef_search"):
        if name not in INDEX_FIELDS[out["index"]]:
            out.pop(name)
    if not out["multi_view"]:
        for name in MULTI_VIEW_FIELDS:
            out.pop(name)
        if out["index"] != "ivf":
            out.pop("seed")  # exact search and HNSW do not use randomness
    elif out["filter_head"] == "kmeans":
        for name in ("head_hidden", "head_epochs", "head_lr", "head_batch", "head_entropy_weight"):
            out.pop(name)
    else:
        out.pop("kmeans_temperature")
    return out
