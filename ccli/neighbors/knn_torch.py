"""The exact torch backend of the kNN search: blocked matmul, low-precision filter, exact rescoring.

The filter product runs in bf16 where the hardware multiplies it natively; its error bound
(`dot_error_bound`) decides which candidates are kept, and the fp32/float64 rescoring of those
makes the answer exact whatever the filter's precision (see `search_torch`).
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator

import numpy as np

from ccli.neighbors import knn_pruned
from ccli.neighbors.knn_faiss import faiss_available
from ccli.neighbors.params import SearchParams

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


def search_torch(base: np.ndarray, params: SearchParams,
                 queries: tuple[int, int] | None = None) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
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
        first, last = (0, n) if queries is None else queries
        # The pruned search answers every row at once from one partition of the base; a sharded
        # rank asks for its own query range only, so it takes the plain blocked search.
        if (first, last) == (0, n) and device.type == "cpu" and (params.prune == "on" or (params.prune == "auto" and n >= knn_pruned.MIN_N)):
            found = knn_pruned.search_pruned(b, low, sq_norms, max_norm, eps_unit, params, cols,
                                             give_up=params.prune == "auto")
            if found is not None:
                for start in range(0, n, rows):
                    yield start, found[0][start : start + rows], found[1][start : start + rows]
                return
        for start in range(first, last, rows):
            stop = min(last, start + rows)
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


def _torch_block_fp32(b, sq_norms, row_ids, cols, params, columns=None):
    """Exact in fp32 for the query rows `row_ids`: products chunk by chunk, top-k' per chunk merged,
    the k' (> k) survivors rescored from the rows themselves (no ‖q‖² + ‖x‖² − 2q·x cancellation).

    The fallback for rows whose filter kept too many near-ties (duplicates, degenerate data).
    `columns` (ids, optional) restricts the database to those rows: the pruned search passes the
    lists it proved hold every neighbour.
    """
    import torch

    n, k = len(b), params.k
    kp = min(n, k + max(k, 16))
    q = b[row_ids]
    width = n if columns is None else len(columns)
    best_v = best_i = None
    for c0 in range(0, width, cols):
        c1 = min(width, c0 + cols)
        if columns is None:
            s = q @ b[c0:c1].T
            chunk_sq = sq_norms[c0:c1]
        else:
            ids = columns[c0:c1]
            s = q @ b[ids].T
            chunk_sq = sq_norms[ids]
        if params.metric == "l2":
            s.mul_(2).sub_(chunk_sq[None, :])
        if params.exclude_self:
            if columns is None:
                hit = (row_ids >= c0) & (row_ids < c1)
                s[hit.nonzero(as_tuple=True)[0], row_ids[hit] - c0] = -math.inf
            else:
                s.masked_fill_(row_ids[:, None] == ids[None, :], -math.inf)
        v, i = torch.topk(s, min(kp, c1 - c0), dim=1)
        i = i + c0 if columns is None else columns[i + c0]
        if best_v is not None:
            v, j = torch.topk(torch.cat([best_v, v], 1), min(kp, best_v.shape[1] + v.shape[1]), dim=1)
            i = torch.gather(torch.cat([best_i, i], 1), 1, j)
        best_v, best_i = v, i
    valid = torch.isfinite(best_v)
    return _rescore(q, b, best_i, valid, k, params.metric)


def exact_scores(q, base, pos, metric):
    """float64 scores [m, c] of query rows q [m, D] against their candidates base[pos] (pos [m, c]).

    q·x (cosine) or −‖q − x‖² (l2) from the fp32 rows cast to float64. One elementwise product and a
    sum over the contiguous last dimension: each pair's value depends on its two rows only, not on
    how many candidates share the call (a batched GEMM may block differently by shape), so the plain
    and the pruned search, which rescore different numbers of candidates, give bit-identical scores.
    Rows go in chunks of ≤ 2¹⁷ float64 elements (1 MB): the gathered [m, c, D] block then stays in
    cache, 2.2× faster than all rows at once (523 × 20 × 128: 5.8 vs 12.9 ms, one thread).
    """
    import torch

    m, c = pos.shape
    out = torch.empty((m, c), dtype=torch.float64, device=q.device)
    step = max(1, 2**17 // max(1, c * q.shape[1]))
    for s in range(0, m, step):
        x64 = base[pos[s : s + step]].double()
        q64 = q[s : s + step].double()[:, None, :]
        if metric == "cosine":
            out[s : s + step] = (x64 * q64).sum(-1)
        else:
            out[s : s + step] = -((q64 - x64) ** 2).sum(-1)
    return out


def _rescore(qf, b, cand, valid, k, metric):
    """Scores of candidate ids [m, k'] recomputed in float64 from the (fp32) rows, the best k per row.

    float64 makes the ranking that of the true scores of the stored rows (a near-tie below fp32
    resolution is still ordered right); ties proper go to the lower id.
    """
    import torch

    safe = cand.clamp_min(0)
    score = exact_scores(qf, b, safe, metric)
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
    `search_torch`); rows where it is not (near-ties) are redone exactly in fp32.
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
    # Every tile goes through the same two buffers: a fresh [m, cols] result per tile cost more in
    # page faults than the bf16 product itself (0.71 vs ~2.2 s per 10⁹ scores, BENCHMARKS.md).
    low_buf = torch.empty(m * cols, dtype=low.dtype) if low.dtype != torch.float32 else None
    f32_buf = torch.empty(m * cols, dtype=torch.float32)
    try:
        for c0 in range(0, n, cols):
            c1 = min(n, c0 + cols)
            s = f32_buf[: m * (c1 - c0)].view(m, c1 - c0)
            if low_buf is None:
                torch.mm(q, low[c0:c1].T, out=s)
            else:
                torch.mm(q, low[c0:c1].T, out=low_buf[: m * (c1 - c0)].view(m, c1 - c0))
                s.copy_(low_buf[: m * (c1 - c0)].view(m, c1 - c0))
            if params.metric == "l2":
                s.mul_(2).sub_(sq_norms[c0:c1][None, :])
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
