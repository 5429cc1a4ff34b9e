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

import contextlib
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


# -- torch: exact blocked matmul, low-precision filter, exact rescoring -------------------------
# Query rows per block and database columns per chunk. A chunk's score tile (rows × cols) stays
# a few MB, so the filter pass over it runs from cache right after the product that wrote it.
_TORCH_QUERY_ROWS = 2048
_TORCH_CHUNK_COLS = 8192
# Candidates kept per query row (on average over a block) before the block falls back to the
# plain fp32 top-k merge: bounds memory on degenerate data (many near-ties, duplicates).
_MAX_CANDIDATES_PER_ROW = 2048


def torch_block_rows(n: int, requested: int = 0) -> int:
    if requested > 0:
        return requested
    return int(max(1, min(n, _TORCH_QUERY_ROWS)))


def torch_device(device: str):
    import torch

    if device in ("auto", "", None):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def filter_dtype(device) -> "torch.dtype":
    """bf16 where the hardware multiplies it natively (GPU, AVX512-BF16/AMX CPU), else fp32.

    On the 2-core test machine (AMD EPYC, AVX512-BF16) a bf16 product runs about 3× the fp32
    one (BENCHMARKS.md); the filter's error bound keeps the final answer exact either way.
    """
    import torch

    if device.type == "cuda":
        return torch.bfloat16
    try:
        if torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return torch.bfloat16
    except (AttributeError, RuntimeError):
        pass
    return torch.float32


def dot_error_bound(dtype, d: int) -> float:
    """A bound on |dot̃(q, x) − q·x| / (‖q‖·‖x‖) for the filter's product in `dtype`.

    Rounding both inputs to a format with unit roundoff u changes each product q_i·x_i by at
    most (2u + u²)|q_i||x_i|; summing those is at most (2u + u²)‖q‖‖x‖ (Cauchy–Schwarz); the fp32
    accumulation adds γ_D = D·2⁻²⁴/(1 − D·2⁻²⁴) of Σ|q_i x_i|; rounding the output to `dtype` adds
    u of the result. The sum, with 10% slack, is returned.
    """
    import torch

    u = 2.0**-8 if dtype == torch.bfloat16 else 2.0**-24
    gamma = d * 2.0**-24 / (1 - d * 2.0**-24)
    out_rounding = u if dtype == torch.bfloat16 else 0.0
    return 1.1 * ((2 * u + u * u) + gamma * (1 + 2 * u) + out_rounding * (1 + 3 * u + gamma))


@contextlib.contextmanager
def _exact_cuda_matmul():
    """No TF32 and no reduced-precision bf16 reductions inside the search (the bound assumes fp32 sums)."""
    import torch

    if not torch.cuda.is_available():
        yield
        return
    m = torch.backends.cuda.matmul
    saved = (m.allow_tf32, m.allow_bf16_reduced_precision_reduction)
    m.allow_tf32, m.allow_bf16_reduced_precision_reduction = False, False
    try:
        yield
    finally:
        m.allow_tf32, m.allow_bf16_reduced_precision_reduction = saved


def _search_torch(base: np.ndarray, params: SearchParams) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Exact top-k: a fast filter product keeps every possible neighbour, fp32 rescoring ranks them.

    For each block of query rows, the database is visited in column chunks. The filter score is
    the dot product (cosine) or 2·q·x − ‖x‖² (l2, the squared distance up to a per-row constant)
    from a bf16 (or fp32) product whose error is at most ε per row (`dot_error_bound`). A running
    k-th best filter score t per row only rises; every column scoring ≥ t − 2ε is kept as a
    candidate. That is a superset of the true top k: each true neighbour scores ≥ s₍k₎ − ε, and
    t ≤ s₍k₎ + ε. After the last chunk the candidates (a few k per row) are rescored in fp32 from
    the rows themselves and ranked, ties by index. Most scores are discarded by one comparison
    per tile, so the selection costs a fraction of the product instead of a full top-k of N².
    """
    import torch

    device = torch_device(params.device)
    n, d = base.shape
    k = params.k
    b = torch.from_numpy(base).to(device)
    dtype = filter_dtype(device)
    low = b.to(dtype) if dtype != torch.float32 else b
    sq_norms = (b * b).sum(1)
    norms = sq_norms.sqrt()
    eps_unit = dot_error_bound(dtype, d)
    rows = torch_block_rows(n, params.block_rows)
    cols = int(max(_TORCH_CHUNK_COLS, 2 * (k + 1)))
    # On a CPU, faiss's heap (one compare per score, in C++) is the selection when importable;
    # elementwise torch passes over each tile cost as much as the bf16 product itself there.
    heaps = device.type == "cpu" and faiss_available()
    with torch.inference_mode(), _exact_cuda_matmul():
        max_norm = float(norms.max()) if n else 0.0
        for start in range(0, n, rows):
            stop = min(n, start + rows)
            if heaps:
                idx, vals = _heap_block(b, low, sq_norms, norms, max_norm, eps_unit, start, stop, cols, params)
            else:
                result = _torch_block(b, low, sq_norms, norms, max_norm, eps_unit, start, stop, cols, params)
                if result is None:
                    result = _torch_block_fp32(b, sq_norms, torch.arange(start, stop, device=device), cols, params)
                idx, vals = result
            yield start, idx.cpu().numpy().astype(np.int64), vals.float().cpu().numpy()


def _filter_scores(q, chunk, metric, chunk_sq):
    s = q @ chunk.T
    if metric == "l2":
        s = s.float().mul_(2).sub_(chunk_sq[None, :])
    return s


def _mask_self(s, start, stop, c0, c1):
    """−inf on the (query i, column i) entries that fall inside this tile."""
    import torch

    lo, hi = max(start, c0), min(stop, c1)
    if lo < hi:
        ids = torch.arange(lo, hi, device=s.device)
        s[ids - start, ids - c0] = -math.inf


def _torch_block(b, low, sq_norms, norms, max_norm, eps_unit, start, stop, cols, params):
    """Top-k of query rows [start, stop) by filter + rescoring; None when candidates overflow."""
    import torch

    n = len(b)
    k = params.k
    m = stop - start
    device = b.device
    q = low[start:stop]
    # Per-row ε: the bound scales with ‖q‖·‖x‖ (≤ ‖q‖·max‖x‖); l2 scores carry the factor 2 of 2q·x
    # and the fp32 subtraction of ‖x‖² (relative 2⁻²³ of the magnitudes involved).
    qn = norms[start:stop]
    if params.metric == "cosine":
        eps = eps_unit * qn * max_norm
    else:
        eps = 2 * eps_unit * qn * max_norm + 2.0**-22 * (2 * qn * max_norm + max_norm**2)
    margin = 2 * eps + 1e-30
    top = None
    kept_r, kept_c, kept_v = [], [], []
    kept = 0
    budget = _MAX_CANDIDATES_PER_ROW * m
    for c0 in range(0, n, cols):
        c1 = min(n, c0 + cols)
        s = _filter_scores(q, low[c0:c1], params.metric, sq_norms[c0:c1])
        if params.exclude_self:
            _mask_self(s, start, stop, c0, c1)
        first = top is None
        if first:  # the running top k starts as this chunk's own
            kk = min(k, c1 - c0)
            top = torch.topk(s.float(), kk, dim=1).values
            if kk < k:  # a first chunk narrower than k (tiny N): pad; later chunks fill it
                top = torch.cat([top, torch.full((m, k - kk), -math.inf, device=device)], 1)
        kth = top[:, -1]
        lim = kth - margin
        # Compare in the tile's dtype with the limit rounded down, so no candidate is lost to rounding.
        lim_t = lim.to(s.dtype)
        lim_t = torch.where(lim_t.float() > lim, torch.nextafter(lim_t.float(), torch.tensor(-math.inf, device=device)).to(s.dtype), lim_t)
        r, c = (s >= lim_t[:, None]).nonzero(as_tuple=True)
        v = s[r, c].float()
        better = v > kth[r]
        if not first and bool(better.any()):
            upd = torch.unique(r[better])
            cand = torch.topk(s[upd].float(), min(k, c1 - c0), dim=1).values
            top[upd] = torch.topk(torch.cat([top[upd], cand], 1), k, dim=1).values
        kept_r.append(r)
        kept_c.append(c + c0)
        kept_v.append(v)
        kept += len(r)
        if kept > budget:
            kept_r, kept_c, kept_v = _prune(kept_r, kept_c, kept_v, top[:, -1] - margin)
            kept = len(kept_r[0])
            if kept > budget // 2:
                return None
    r, c, _ = (t[0] for t in _prune(kept_r, kept_c, kept_v, top[:, -1] - margin))
    # Exact rescoring in fp32 from the rows themselves.
    qf = b[start:stop].double()
    if params.metric == "cosine":
        score = (qf[r] * b[c].double()).sum(1)
    else:
        score = -((qf[r] - b[c].double()) ** 2).sum(1)
    return _rank_candidates(r, c, score, m, k, params.metric)


def _prune(kept_r, kept_c, kept_v, lim):
    import torch

    r, c, v = torch.cat(kept_r), torch.cat(kept_c), torch.cat(kept_v)
    keep = v >= lim[r]
    return [r[keep]], [c[keep]], [v[keep]]


def _rank_candidates(r, c, score, m, k, metric):
    """Per row, the k best candidates by fp32 score (ties: lower index first)."""
    import torch

    order = torch.argsort(r * (int(c.max()) + 1 if len(c) else 1) + c)  # by row, then column
    r, c, score = r[order], c[order], score[order]
    counts = torch.bincount(r, minlength=m)
    width = int(counts.max())
    offsets = torch.cumsum(counts, 0) - counts
    pos = torch.arange(len(r), device=r.device) - offsets[r]
    table = torch.full((m, width), -math.inf, dtype=score.dtype, device=r.device)
    ids = torch.zeros((m, width), dtype=torch.int64, device=r.device)
    table[r, pos] = score
    ids[r, pos] = c
    vals, rank = torch.sort(table, dim=1, descending=True, stable=True)
    vals, rank = vals[:, :k], rank[:, :k]
    idx = torch.gather(ids, 1, rank)
    if metric == "l2":
        vals = (-vals).clamp_min_(0).sqrt_()
    return idx, vals.float()


def _torch_block_fp32(b, sq_norms, row_ids, cols, params):
    """Exact in fp32 for the query rows `row_ids`: products chunk by chunk, top-k' per chunk merged,
    the k' (> k) survivors rescored from the rows themselves (no ‖q‖² + ‖x‖² − 2q·x cancellation).

    The fallback for rows whose filter kept too many near-ties (duplicates, degenerate data).
    """
    import torch

    n, k = len(b), params.k
    kp = min(n, k + max(k, 16))
    q = b[row_ids]
    best_v = best_i = None
    for c0 in range(0, n, cols):
        c1 = min(n, c0 + cols)
        s = q @ b[c0:c1].T
        if params.metric == "l2":
            s.mul_(2).sub_(sq_norms[c0:c1][None, :])
        if params.exclude_self:
            hit = (row_ids >= c0) & (row_ids < c1)
            s[hit.nonzero(as_tuple=True)[0], row_ids[hit] - c0] = -math.inf
        v, i = torch.topk(s, min(kp, c1 - c0), dim=1)
        i += c0
        if best_v is not None:
            v, j = torch.topk(torch.cat([best_v, v], 1), min(kp, best_v.shape[1] + v.shape[1]), dim=1)
            i = torch.gather(torch.cat([best_i, i], 1), 1, j)
        best_v, best_i = v, i
    valid = torch.isfinite(best_v)
    return _rescore(q, b, best_i, valid, k, params.metric)


def _rescore(qf, b, cand, valid, k, metric):
    """Scores of candidate ids [m, k'] recomputed in float64 from the (fp32) rows, the best k per row.

    float64 makes the ranking that of the true scores of the stored rows (a near-tie below fp32
    resolution is still ordered right); ties proper go to the lower id.
    """
    import torch

    safe = cand.clamp_min(0)
    q64, x64 = qf.double(), b[safe].double()
    if metric == "cosine":
        score = torch.einsum("md,mkd->mk", q64, x64)
    else:
        score = -((q64[:, None, :] - x64) ** 2).sum(-1)
    score[~valid] = -math.inf
    by_id = torch.argsort(torch.where(valid, cand, len(b)), dim=1)
    cand, score = torch.gather(cand, 1, by_id), torch.gather(score, 1, by_id)
    top, rank = torch.sort(score, dim=1, descending=True, stable=True)
    out_v, out_i = top[:, :k].contiguous(), torch.gather(cand, 1, rank[:, :k])
    if metric == "l2":
        out_v = (-out_v).clamp_min_(0).sqrt_()
    return out_i, out_v.float()


def _heap_block(b, low, sq_norms, norms, max_norm, eps_unit, start, stop, cols, params):
    """CPU: bf16 (or fp32) tiles into faiss heaps of k' > k, a per-row proof of exactness, fp32 rescoring.

    The heap keeps the k' best filter scores. When the k'-th is below t − 2ε (t the k-th,
    ε the filter's error bound) every possible true neighbour is among the k' (see
    `_search_torch`); rows where it is not (near-ties) are redone exactly in fp32.
    """
    import faiss
    import torch

    n, k = len(b), params.k
    m = stop - start
    kp = min(n, k + max(k, 16))
    vals = np.full((m, kp), -np.inf, dtype=np.float32)
    ids = np.full((m, kp), -1, dtype=np.int64)
    heap = faiss.float_minheap_array_t()
    heap.nh, heap.k, heap.val, heap.ids = m, kp, faiss.swig_ptr(vals), faiss.swig_ptr(ids)
    q = low[start:stop]
    # One OpenMP thread for the heap pass: on the shared 2-core machine its per-tile thread team
    # measured slower than a single thread (BENCHMARKS.md); the products keep torch's threads.
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        for c0 in range(0, n, cols):
            c1 = min(n, c0 + cols)
            s = _filter_scores(q, low[c0:c1], params.metric, sq_norms[c0:c1])
            if s.dtype != torch.float32:
                s = s.float()
            if params.exclude_self:
                _mask_self(s, start, stop, c0, c1)
            tile = s.numpy()
            heap.addn(c1 - c0, faiss.swig_ptr(tile), c0, 0, m)
    finally:
        faiss.omp_set_num_threads(threads)
    heap.reorder()
    qn = norms[start:stop].numpy()
    if params.metric == "cosine":
        eps = eps_unit * qn * max_norm
    else:
        eps = 2 * eps_unit * qn * max_norm + 2.0**-22 * (2 * qn * max_norm + max_norm**2)
    t = vals[:, k - 1]
    proven = (vals[:, kp - 1] < t - 2 * eps) | (kp >= n - (1 if params.exclude_self else 0))
    cand = torch.from_numpy(ids)
    out_i, out_v = _rescore(b[start:stop], b, cand, cand >= 0, k, params.metric)
    redo = np.flatnonzero(~proven)
    if len(redo):
        fi, fv = _torch_block_fp32(b, sq_norms, torch.from_numpy(redo + start), cols, params)
        out_i[torch.from_numpy(redo)], out_v[torch.from_numpy(redo)] = fi, fv
    return out_i, out_v


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
