"""The faiss backend of the kNN search: flat (exact), IVF and HNSW (approximate) indexes.

Also where ccli asks whether faiss is importable and sees a GPU: `resolve_backend` chooses
by it, and the torch backend borrows faiss's heaps on a CPU when it can.
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np

from ccli.errors import BadInput, CcliError
from ccli.neighbors.params import INDEXES, SearchParams

# Queries per faiss search call: bounds the result buffers; faiss blocks internally too.
FAISS_BLOCK_ROWS = 16384


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


# Only faiss needs this: it cannot be told to skip a row's own id, so it is asked for k+1.
# The torch backend masks self inside each score tile instead.
def drop_self(ids: np.ndarray, scores: np.ndarray, row_ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """From k+1 results per row, remove the row's own id (or, if absent, the last result)."""
    is_self = ids == row_ids[:, None]
    # A stable argsort on the boolean mask moves the (at most one) self entry to the end
    # and keeps everything else in rank order.
    order = np.argsort(is_self, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(ids, order, axis=1), np.take_along_axis(scores, order, axis=1)


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



def search_faiss(base: np.ndarray, params: SearchParams,
                 queries: tuple[int, int] | None = None) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    index = build_faiss_index(base, params)
    first, last = (0, len(base)) if queries is None else queries
    extra = 1 if params.exclude_self else 0
    rows = params.block_rows or FAISS_BLOCK_ROWS
    for start in range(first, last, rows):
        q = base[start : min(last, start + rows)]
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
