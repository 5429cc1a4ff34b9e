"""Exact kNN that scores only the lists that can hold a neighbour: cluster bounds (issue 17).

The database is partitioned into lists by a coarse k-means (`ccli.fit.kmeans.partition`) and
sorted by list. For each list, c is the mean of its rows and r = max ‖x − c‖ over them (float64,
rounded up). For every point x of the list and any query q,

    ‖q − x‖ ≥ ‖q − c‖ − r = gap, so
    l2:      2q·x − ‖x‖² = ‖q‖² − ‖q − x‖² ≤ ‖q‖² − max(0, gap)²
    cosine:  q·x = (‖q‖² + ‖x‖² − ‖q − x‖²)/2 ≤ (‖q‖² + max ‖x‖² − max(0, gap)²)/2,
             and q·x = q·c + q·(x − c) ≤ q·c + ‖q‖·r; the smaller of the two

(the right sides from an fp32 product q·c plus its rounding bound γ_D·‖q‖‖c‖, `_gamma`). Queries
are processed a few lists at a time (a block: rows that are close to each other). A block is
first scored against its own rows; the k-th best filter score minus the filter's error bound
ε is then a lower bound t on every query's true k-th score. A list whose bound is below t for
every query of the block cannot hold any of their neighbours and is never scored; the others
are scored best bound first, t rising after each chunk of columns. The scoring itself is the
existing CPU machinery (`knn_torch`): bf16 tiles into faiss heaps of k' > k, the per-row proof
(k'-th filter score < k-th − 2ε) and float64 rescoring; a row the proof fails on is redone by
the exact fp32 scan (`_torch_block_fp32`). So the answer is the brute force's: a skipped
column scores strictly below some true k-th score, every other one went through the proof.
The fp32 redo runs over the lists the block scored only (the skipped ones were proven empty of
neighbours), and once a block's proof fails on most of its rows (near-ties within bf16's 2ε:
dense isotropic clusters) every later block filters in fp32, whose ε is ~10⁻⁵ of bf16's.

Uniform rows give no pruning (every bound is above t). The first blocks measure the fraction of
columns scored; above `_MAX_SCORED_FRACTION` the search gives up (None) and the caller runs the
plain path.
"""

from __future__ import annotations

import numpy as np

# Rows per list (N / this = number of lists), rows per query block, and the size from which
# 'auto' tries pruning. PROPOSED, not tuned: lists must be smaller than the data's clusters for
# the bounds to prune (at 30k rows around 1,000 centres, 30 rows each, nothing was pruned), and
# a block is scored against the union of its queries' lists: blocks of ≥ 256 rows (one list,
# mostly) scored 0.045 of N² at 100k around 100 centres against 0.058 with ≥ 512, 14.7–16.0 s vs
# 18.4–18.7 s; lists of 128 scored less but took longer (22.7 s). BENCHMARKS.md, "issue 17:
# pruned exact kNN".
ROWS_PER_LIST = 256
BLOCK_ROWS = 256
MIN_N = 20_000
# The first blocks decide whether to go on: if they had to score more than this fraction of the
# database, pruning does not pay (uniform, unstructured rows) and the plain search runs instead.
# PROPOSED, not measured at the crossover: a guess that above half of N² the partition and the
# gathered columns eat what skipping saves. (At 10k rows around 100 centres 'on' scored 0.91 of
# N² and still won, 7.6 s vs 11.9 s, but by its fp32 switch on near-ties, not by pruning.)
PROBE_BLOCKS = 4
_MAX_SCORED_FRACTION = 0.5


def _gamma(d: int) -> float:
    """γ_D: relative error bound of an fp32 dot product of length D (times Σ|q_i c_i| ≤ ‖q‖‖c‖), with slack."""
    u = 2.0**-24
    return 1.1 * d * u / (1 - d * u) + 4 * u


class Lists:
    """The database sorted by list, with each list's centre, radius and row range."""

    def __init__(self, b, low, params):
        import torch

        from ccli.fit.kmeans import partition

        n, d = b.shape
        nlist = int(max(1, min(n // 2, round(n / ROWS_PER_LIST))))
        # 3 Lloyd steps on 32 rows per centre: at N = 200k (781 lists) 8.6 s for the whole build
        # vs 13.1 s with 6 steps on 64, the same radii (median 0.506 vs 0.516; BENCHMARKS.md).
        labels, _ = partition(b, nlist, seed=params.seed, iters=3, sample_per_centre=32)
        order = torch.argsort(labels, stable=True)
        counts = torch.bincount(labels, minlength=nlist)
        keep = counts > 0
        counts = counts[keep]
        labels_sorted = torch.repeat_interleave(torch.arange(len(counts)), counts)
        self.perm = order
        self.perm_np = order.numpy()
        self.b = b[order]
        self.low = low[order] if low.dtype != b.dtype else self.b
        self.sq = (self.b * self.b).sum(1)
        self.norm = self.sq.double().sqrt()
        self.ends = torch.cumsum(counts, 0).numpy()
        self.starts = self.ends - counts.numpy()
        # Means in float64 (block sums), then the fp32 centre the bound uses; radius against that centre.
        sums = torch.zeros((len(counts), d), dtype=torch.float64)
        for s in range(0, n, 65536):
            sums.index_add_(0, labels_sorted[s : s + 65536], self.b[s : s + 65536].double())
        self.centres = (sums / counts[:, None].double()).float()
        c64 = self.centres.double()
        radius = torch.zeros(len(counts), dtype=torch.float64)
        for s in range(0, n, 65536):
            lab = labels_sorted[s : s + 65536]
            dist = ((self.b[s : s + 65536].double() - c64[lab]) ** 2).sum(1).sqrt()
            radius.scatter_reduce_(0, lab, dist, reduce="amax")
        # float64 rounding of a D-term sum and a square root: relative ≤ (D + 2)·2⁻⁵³; 1e-12 covers it.
        self.radius = radius * (1 + 1e-12)
        self.c_norm = c64.norm(dim=1) * (1 + 1e-12)
        max_sq = torch.zeros(len(counts), dtype=torch.float64)
        max_sq.scatter_reduce_(0, labels_sorted, (self.b.double() ** 2).sum(1), reduce="amax")
        self.max_sq = max_sq * (1 + 1e-12)
        self.sizes = counts.numpy()

    def blocks(self, rows: int):
        """Consecutive lists grouped into query blocks of at least `rows` rows: (first list, last list + 1)."""
        out, g0, acc = [], 0, 0
        for g, size in enumerate(self.sizes):
            acc += int(size)
            if acc >= rows:
                out.append((g0, g + 1))
                g0, acc = g + 1, 0
        if g0 < len(self.sizes):
            out.append((g0, len(self.sizes)))
        return out


def upper_bounds(lists: Lists, qf, q_norm, metric: str):
    """[m, L] float64: an upper bound on the true score of query rows `qf` against any row of each list.

    The score is q·x (cosine) or 2q·x − ‖x‖² (l2), the exact value from the stored fp32 rows.
    """
    d = qf.shape[1]
    qc = (qf @ lists.centres.T).double()
    err = _gamma(d) * q_norm[:, None] * lists.c_norm[None, :]
    q_sq = q_norm[:, None] ** 2
    c_sq = lists.c_norm[None, :] ** 2
    # ‖q − c‖² ≥ ‖q‖² + ‖c‖² − 2(q·c + err), less float64 rounding of the sum.
    d2 = q_sq + c_sq - 2 * (qc + err) - 1e-12 * (q_sq + c_sq)
    gap = (d2.clamp_min(0).sqrt() - lists.radius[None, :]).clamp_min(0)
    gap_sq = gap * gap
    if metric == "cosine":
        # q·x = (‖q‖² + ‖x‖² − ‖q − x‖²)/2 with ‖q − x‖ ≥ gap; and q·x ≤ q·c + ‖q‖·r (Cauchy–Schwarz).
        sphere = 0.5 * (q_sq + lists.max_sq[None, :] - gap_sq) + 1e-12 * (q_sq + lists.max_sq[None, :])
        return sphere.minimum(qc + err + q_norm[:, None] * lists.radius[None, :])
    return q_sq - gap_sq + 1e-12 * (q_sq + c_sq)


def search_pruned(b, low, sq_norms, max_norm, eps_unit, params, cols, give_up: bool = True,
                  stats: dict | None = None):
    """Exact top-k of every row of `b` against all rows, scoring only lists that can hold a neighbour.

    Returns (indices int64 [N, k], scores float32 [N, k]) in row order, or None when the first
    blocks show that pruning does not pay (the caller then runs the plain search). `stats`, when
    given, receives the number of scores computed and the lists' shape.
    """
    import faiss
    import torch

    from ccli.neighbors.knn_torch import _mask_self, _rescore, _torch_block_fp32, dot_error_bound

    n, d = b.shape
    k = params.k
    kp = min(n, k + max(k, 16))
    lists = Lists(b, low, params)
    out_i = np.empty((n, k), dtype=np.int64)
    out_v = np.empty((n, k), dtype=np.float32)
    blocks = lists.blocks(BLOCK_ROWS)
    scored = 0
    probe = 0
    redone = 0
    fp32_next = False
    fp32_blocks = 0
    eps_fp32 = dot_error_bound(torch.float32, d)
    buffers = [torch.empty(0), torch.empty(0)]
    max_fraction = _MAX_SCORED_FRACTION
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        for number, (g0, g1) in enumerate(blocks):
            s0, s1 = int(lists.starts[g0]), int(lists.ends[g1 - 1])
            m = s1 - s0
            qf = lists.b[s0:s1]
            # The filter's precision: bf16 (when the caller's is) until a block's proof fails on most
            # rows (near-ties within 2ε), then fp32 for every later block: its ε is ~10⁻⁵ of bf16's,
            # so the proof holds there and the fp32 redo (a second pass) is not paid on every row.
            source = lists.b if fp32_next else lists.low
            unit = eps_fp32 if fp32_next else eps_unit
            q = source[s0:s1]
            q_norm = lists.norm[s0:s1]
            if params.metric == "cosine":
                eps = unit * q_norm * max_norm
            else:
                eps = 2 * unit * q_norm * max_norm + 2.0**-22 * (2 * q_norm * max_norm + max_norm**2)
            vals = np.full((m, kp), -np.inf, dtype=np.float32)
            ids = np.full((m, kp), -1, dtype=np.int64)
            heap = faiss.float_minheap_array_t()
            heap.nh, heap.k, heap.val, heap.ids = m, kp, faiss.swig_ptr(vals), faiss.swig_ptr(ids)
            taken = [np.arange(s0, s1)]  # sorted positions of every column scored for this block

            def score(rows_sorted, self_diagonal=False):
                width = len(rows_sorted)
                if buffers[0].numel() < m * width:
                    buffers[:] = [torch.empty(m * width, dtype=lists.low.dtype), torch.empty(m * width)]
                tile = buffers[1][: m * width].view(m, width)
                where = slice(s0, s1) if self_diagonal else torch.from_numpy(rows_sorted)
                chunk = source[where]
                if source.dtype == torch.float32:
                    torch.mm(q, chunk.T, out=tile)
                else:
                    low_tile = buffers[0][: m * width].view(m, width)
                    torch.mm(q, chunk.T, out=low_tile)
                    tile.copy_(low_tile)
                if params.metric == "l2":
                    tile.mul_(2).sub_(lists.sq[where][None, :])
                if self_diagonal and params.exclude_self:
                    _mask_self(tile, 0, m, 0, m)
                tile_np = tile.numpy()
                col_ids = np.ascontiguousarray(lists.perm_np[rows_sorted])
                heap.addn_with_ids(width, faiss.swig_ptr(tile_np), faiss.swig_ptr(col_ids), 0, 0, m)
                return m * width

            def lower():
                """A lower bound on every query's true k-th score from the heap so far (float64)."""
                kth = np.partition(vals, kp - k, axis=1)[:, kp - k].astype(np.float64)
                return torch.from_numpy(kth) - eps

            scored += score(np.arange(s0, s1), self_diagonal=True)
            ub = upper_bounds(lists, qf, q_norm, params.metric)
            best = ub.max(0).values
            pending = torch.ones(len(lists.sizes), dtype=torch.bool)
            pending[g0:g1] = False  # the block's own lists: scored above
            # A list stays pending while some query's bound reaches its lower bound t (≥: a tie at the
            # k-th score may still enter the top k by a lower index); t rises after every chunk.
            need = (ub >= lower()[:, None]).any(0) & pending
            while bool(need.any()):
                cand = need.nonzero(as_tuple=True)[0]
                cand = cand[torch.argsort(best[cand], descending=True)].numpy()
                width = np.cumsum(lists.sizes[cand])
                take = cand[: max(1, int(np.searchsorted(width, cols)))]
                rows_sorted = np.concatenate([np.arange(lists.starts[g], lists.ends[g]) for g in take])
                taken.append(rows_sorted)
                scored += score(rows_sorted)
                pending[torch.from_numpy(take)] = False
                need = (ub >= lower()[:, None]).any(0) & pending
            probe += m
            if give_up and number + 1 == min(PROBE_BLOCKS, len(blocks)) and len(blocks) > number + 1:
                if scored > max_fraction * n * probe:
                    if stats is not None:
                        stats.update(gave_up=True, scored_fraction=scored / float(n) / probe)
                    return None
            # The proof and the exact rescoring, as in knn_torch._heap_block.
            heap.reorder()
            t_k = vals[:, k - 1]
            proven = (vals[:, kp - 1] < t_k - 2 * eps.numpy()) | (kp >= n - (1 if params.exclude_self else 0))
            rows = lists.perm[s0:s1]
            cand_t = torch.from_numpy(ids)
            bi, bv = _rescore(qf, b, cand_t, cand_t >= 0, k, params.metric)
            redo = np.flatnonzero(~proven)
            fp32_blocks += int(fp32_next)
            fp32_next = fp32_next or len(redo) > m // 2  # the data's property: it stays
            if len(redo):
                # fp32 over the scored lists only: every other list was proven to hold no neighbour.
                redone += len(redo)
                columns = lists.perm[torch.from_numpy(np.concatenate(taken))]
                fi, fv = _torch_block_fp32(b, sq_norms, rows[torch.from_numpy(redo)], cols, params, columns=columns)
                bi[torch.from_numpy(redo)], bv[torch.from_numpy(redo)] = fi, fv
            out_i[lists.perm_np[s0:s1]] = bi.numpy()
            out_v[lists.perm_np[s0:s1]] = bv.numpy()
    finally:
        faiss.omp_set_num_threads(threads)
    if stats is not None:
        stats.update(scores=scored, lists=len(lists.sizes), blocks=len(blocks), redone=redone, fp32_blocks=fp32_blocks,
                     scored_fraction=scored / float(n) / n, gave_up=False)
    return out_i, out_v
