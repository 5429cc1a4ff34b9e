"""Top-k neighbour search over a feature matrix: faiss (CPU or GPU) or an exact torch matmul.

Both backends search the queries block by block, so the largest temporary is
`block_rows × N` similarities (torch) or faiss's own bounded buffers, never N×N. Results
come out as a stream of row blocks that the caller can write straight to disk.

Conventions shared by every backend:
- metric 'cosine': rows are L2-normalised, scores are cosine similarities, descending;
- metric 'l2': scores are Euclidean distances (not squared), ascending;
- `exclude_self`: row i never lists i. Self is removed by id, not by position, so a
  duplicate point ranked above i is kept as a genuine neighbour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ccli.errors import BadInput, CcliError

METRICS = ("cosine", "l2")
BACKENDS = ("auto", "faiss", "torch")
INDEXES = ("flat", "ivf", "hnsw")

# Temporary similarity block for the torch backend (queries × N float32).
_TORCH_BLOCK_BYTES = 128 * 2**20
# Queries per faiss search call: bounds the result buffers; faiss blocks internally too.
_FAISS_BLOCK_ROWS = 16384


@dataclass(frozen=True)
class SearchParams:
    """How to search; everything here except `block_rows`/`device` can change the result."""

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


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def faiss_gpu_count() -> int:
    try:
        import faiss

        return int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0
    except ImportError:
        return 0


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


def drop_self(ids: np.ndarray, scores: np.ndarray, row_ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """From k+1 results per row, remove the row's own id (or, if absent, the last result)."""
    is_self = ids == row_ids[:, None]
    # A stable argsort on the boolean mask moves the (at most one) self entry to the end
    # and keeps everything else in rank order.
    order = np.argsort(is_self, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(ids, order, axis=1), np.take_along_axis(scores, order, axis=1)


def search(x: np.ndarray, params: SearchParams, copy: bool = True) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Stream (start_row, indices int64 [b,k], scores float32 [b,k]) for every row of `x` against all of `x`.

    `copy=False` lets a caller that owns a float32 `x` have it normalised in place (one
    N×D matrix in memory instead of two).
    """
    check_k(params.k, len(x), "the features")
    base = prepare(x, params.metric, copy=copy)
    if params.backend == "torch":
        yield from _search_torch(base, params)
    elif params.backend == "faiss":
        yield from _search_faiss(base, params)
    else:
        raise ValueError(f"unresolved backend {params.backend!r}")


def knn(x: np.ndarray, params: SearchParams, copy: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The whole [N,k] result in memory (tests, small N, and the multi-view cascade)."""
    n = len(x)
    indices = np.empty((n, params.k), dtype=np.int64)
    scores = np.empty((n, params.k), dtype=np.float32)
    for start, idx, sc in search(x, params, copy=copy):
        indices[start : start + len(idx)] = idx
        scores[start : start + len(sc)] = sc
    return indices, scores


# -- torch: exact blocked matmul + top-k --------------------------------------------------
def torch_block_rows(n: int, requested: int = 0) -> int:
    if requested > 0:
        return requested
    return int(max(1, min(n, _TORCH_BLOCK_BYTES // (4 * max(1, n)))))


def torch_device(device: str):
    import torch

    if device in ("auto", "", None):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _search_torch(base: np.ndarray, params: SearchParams) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    import torch

    device = torch_device(params.device)
    n = len(base)
    b = torch.from_numpy(base).to(device)
    sq_norms = (b * b).sum(1) if params.metric == "l2" else None
    rows = torch_block_rows(n, params.block_rows)
    with torch.inference_mode():
        for start in range(0, n, rows):
            q = b[start : start + rows]
            sim = q @ b.T
            if params.metric == "l2":
                # Negated squared distance, so one top-k (largest) serves both metrics.
                sim.mul_(2).sub_(sq_norms[None, :]).sub_(sq_norms[start : start + len(q), None])
            if params.exclude_self:
                local = torch.arange(len(q), device=device)
                sim[local, local + start] = -math.inf
            vals, idx = torch.topk(sim, params.k, dim=1, largest=True, sorted=True)
            if params.metric == "l2":
                vals = (-vals).clamp_min_(0).sqrt_()
            yield start, idx.cpu().numpy().astype(np.int64), vals.float().cpu().numpy()


# -- faiss: flat (exact), IVF and HNSW (approximate) ----------------------------------------
def default_nlist(n: int) -> int:
    """2·√N lists, but at least 39 training points per list (faiss's minimum).

    The usual 4·√N doubles k-means training time for little recall gain at a fixed
    fraction of lists probed; measured in BENCHMARKS.md.
    """
    return int(max(1, min(round(2 * math.sqrt(n)), n // 39)))


def build_faiss_index(base: np.ndarray, params: SearchParams):
    """A faiss index holding `base`, on the GPU when faiss sees one and the device allows."""
    import faiss

    d = base.shape[1]
    metric = faiss.METRIC_INNER_PRODUCT if params.metric == "cosine" else faiss.METRIC_L2
    use_gpu = faiss_gpu_count() > 0 and not str(params.device).startswith("cpu") and params.index != "hnsw"
    if params.index == "flat":
        index = faiss.IndexFlatIP(d) if params.metric == "cosine" else faiss.IndexFlatL2(d)
    elif params.index == "ivf":
        nlist = params.nlist or default_nlist(len(base))
        quantizer = faiss.IndexFlatIP(d) if params.metric == "cosine" else faiss.IndexFlatL2(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, metric)
        index.cp.seed = params.seed
    elif params.index == "hnsw":
        index = faiss.IndexHNSWFlat(d, params.hnsw_m, metric)
        index.hnsw.efConstruction = params.ef_construction
    else:
        raise BadInput(f"--index {params.index} is not one of {', '.join(INDEXES)}.")
    if use_gpu:
        device_no = int(str(params.device).split(":")[1]) if ":" in str(params.device) else 0
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), device_no, index)
    if params.index == "ivf":
        # Training on a seeded sample of 64 points per list keeps IVF reproducible and its
        # k-means cheap (faiss would otherwise sample 256 per list).
        sample_size = min(len(base), 64 * (params.nlist or default_nlist(len(base))))
        sample = np.random.default_rng(params.seed).choice(len(base), sample_size, replace=False)
        index.train(base[np.sort(sample)])
    index.add(base)
    if params.index == "ivf":
        faiss.ParameterSpace().set_index_parameter(index, "nprobe", params.nprobe)
    elif params.index == "hnsw":
        index.hnsw.efSearch = max(params.ef_search, params.k + 1)
    return index


def _search_faiss(base: np.ndarray, params: SearchParams) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    index = build_faiss_index(base, params)
    n = len(base)
    extra = 1 if params.exclude_self else 0
    rows = params.block_rows or _FAISS_BLOCK_ROWS
    for start in range(0, n, rows):
        q = base[start : start + rows]
        scores, ids = index.search(q, params.k + extra)
        ids = ids.astype(np.int64, copy=False)
        if params.exclude_self:
            ids, scores = drop_self(ids, scores, np.arange(start, start + len(q)), params.k)
        if (ids < 0).any():
            # Approximate indexes return -1 when the probed lists hold fewer than k points.
            raise CcliError(
                f"the {params.index} index found fewer than k={params.k} neighbours for some points; "
                "raise --nprobe / --ef-search or use --index flat."
            )
        if params.metric == "l2":
            scores = np.sqrt(np.maximum(scores, 0))
        yield start, ids, scores.astype(np.float32, copy=False)
