"""Exact kNN that scores only the lists that can hold a neighbour: cluster bounds (issue 17).

The database is partitioned into lists by a coarse k-means (`ccli.fit.kmeans.partition`) and
sorted by list. For each list, c is the mean of its rows and r ≥ max ‖x − c‖ over them (fp32,
rounded up by its error bound). For every point x of the list and any query q,

    ‖q − x‖ ≥ ‖q − c‖ − r = gap, so
    l2:      2q·x − ‖x‖² = ‖q‖² − ‖q − x‖² ≤ ‖q‖² − max(0, gap)²
    cosine:  q·x = (‖q‖² + ‖x‖² − ‖q − x‖²)/2 ≤ (‖q‖² + max ‖x‖² − max(0, gap)²)/2,
             and q·x = q·c + q·(x − c) ≤ q·c + ‖q‖·r; the smaller of the two

(the right sides from an fp32 product q·c plus its rounding bound γ_D·‖q‖‖c‖, `_gamma`).

Queries are processed a few lists at a time (a block: rows close to each other). A block is
first scored against its own rows: the k-th best fp32 score minus the product's error bound ε
is a lower bound t on every query's true k-th score. A list is then scored only while some
query's bound reaches its t, best bound first, t rising after every round of columns. So a skipped column scores strictly below some true k-th
score and cannot be a neighbour (nor win a tie).

Among the scored columns every row keeps its best k + 1 fp32 scores (a group-maximum pass, then
top-k over the few groups that can hold them: `_top`). When the (k+1)-th is below the k-th − 2ε
(the proof), the k best by fp32 are the true k best, and only those k are rescored in float64 to
order them (ties: lower id). Rows the proof fails on (near-ties within 2ε ≈ 2·10⁻⁵ of the k-th,
duplicates) are solved in float64 over every scored column (`_exact_rows`). The answer is the
float64 brute force's, ids and scores.

Uniform rows give no pruning (every bound is above t). The first blocks measure the fraction of
columns scored; above `_MAX_SCORED_FRACTION` the search gives up (None) and the caller runs the
plain path.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

# Rows per list (N / this = number of lists), rows per query block, and the size from which
# 'auto' tries pruning. Lists must be smaller than the data's clusters for the bounds to prune
# (at 30k rows around 1,000 centres, 30 rows each, nothing was pruned); a block of ≥ 256 rows is
# one list mostly. BENCHMARKS.md, "issue 17: pruned exact kNN" (h27's runs and this file's).
ROWS_PER_LIST = 256
BLOCK_ROWS = 256
MIN_N = 20_000
# The first blocks decide whether to go on: if they had to score more than this fraction of the
# database, pruning does not pay (uniform, unstructured rows) and the plain search runs instead.
# PROPOSED, not measured at the crossover: a guess that above half of N² the partition and the
# gathered columns eat what skipping saves.
PROBE_BLOCKS = 4
_MAX_SCORED_FRACTION = 0.5
# Columns per group in `_top`: the group maxima are one vectorised pass; the top k + 1 of the
# row then lies in the k + 1 groups with the largest maxima.
_GROUP = 16
# A list that at least this share of a block's queries can reach is scored for the whole block;
# the others for their queries only. PROPOSED: a gathered product per list costs a few whole-block
# columns' worth of overhead; not tuned.
DENSE_SHARE = 0.25
# fp32 scores kept past the k-th per row, the proof's witnesses (the (k+1)-th, else the last). At 100k
# rows around 100 centres the (k+1)-th alone failed on 4.3% of rows (the 20th and 21st within 2ε ≈
# 1.7·10⁻⁵), each then solved in float64 over every scored column.
WITNESSES = 4


def _gamma(d: int) -> float:
    """γ_D: relative error bound of an fp32 dot product of length D (times Σ|q_i c_i| ≤ ‖q‖‖c‖), with slack."""
    u = 2.0**-24
    return 1.1 * d * u / (1 - d * u) + 4 * u


def _lower_sq(upper_sq, d: int):
    """A lower bound on ‖v‖² from an upper one that was an fp32 norm (or root of an fp32 sum of squares)
    rounded up by ≤ (1 + 2γ): that norm was within (1 ± γ) of the true one."""
    return upper_sq / (1 + 2 * _gamma(d)) ** 4


def _down(t):
    """float64 thresholds rounded down to fp32 (a bound ≥ the rounded t keeps its list: none is lost)."""
    import torch

    f = t.float()
    return torch.where(f.double() > t, torch.nextafter(f, torch.tensor(-np.inf)), f)


class Lists:
    """The database sorted by list, with each list's centre, radius and row range."""

    def __init__(self, b, params):
        import torch

        from ccli.fit.kmeans import partition

        n, d = b.shape
        nlist = int(max(1, min(n // 2, round(n / ROWS_PER_LIST))))
        # 3 Lloyd steps on 32 rows per centre: at N = 200k (781 lists) 8.6 s for the whole build
        # vs 13.1 s with 6 steps on 64, the same radii (median 0.506 vs 0.516; BENCHMARKS.md).
        labels, _ = partition(b, nlist, seed=params.seed, iters=3, sample_per_centre=32)
        order = torch.argsort(labels, stable=True)
        counts = torch.bincount(labels, minlength=nlist)
        counts = counts[counts > 0]
        lab = torch.repeat_interleave(torch.arange(len(counts)), counts)
        self.perm = order
        self.b = b[order]
        self.sq = (self.b * self.b).sum(1)
        self.norm = self.sq.double().sqrt() * (1 + _gamma(d))
        self.ends = torch.cumsum(counts, 0).numpy()
        self.starts = self.ends - counts.numpy()
        self.sizes = counts.numpy()
        # fp32 means (any point would do as the centre: the radius is measured against the one used).
        sums = torch.zeros((len(counts), d), dtype=torch.float32).index_add_(0, lab, self.b)
        self.centres = sums / counts[:, None].float()
        slack = 1 + 2 * _gamma(d)  # fp32 differences, squares, sum and root: relative ≤ γ_D + 4u each way
        radius = torch.zeros(len(counts), dtype=torch.float32)
        for s in range(0, n, 65536):
            dist = (self.b[s : s + 65536] - self.centres[lab[s : s + 65536]]).norm(dim=1)
            radius.scatter_reduce_(0, lab[s : s + 65536], dist, reduce="amax")
        self.radius = radius.double() * slack
        self.c_norm = self.centres.norm(dim=1).double() * slack
        max_sq = torch.zeros(len(counts), dtype=torch.float32).scatter_reduce_(0, lab, self.sq, reduce="amax")
        self.max_sq = max_sq.double() * slack
        self.max_norm = self.max_sq.sqrt()

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


def upper_bounds(lists: Lists, qf, q_norm, metric: str, which=None):
    """[m, L'] float32: an upper bound on the true score of query rows `qf` against any row of each list.

    The score is q·x (cosine) or 2q·x − ‖x‖² (l2), the exact value from the stored fp32 rows.
    `which` (list numbers) restricts the lists; `q_norm` (float64) bounds ‖q‖ from above.

    In fp32 (half the time of float64 on [m, L], which every block pays): each of the ~12 fp32
    operations below rounds by ≤ 2⁻²⁴ of a magnitude ≤ M = ‖q‖² + ‖c‖² + max ‖x‖² (+ ‖q‖r terms of
    the same size), so 2⁻¹⁸·M covers them with room; it is taken off ‖q − c‖² before the root (a
    lower value stays a lower bound), the root and the square are scaled by 1 ∓ 2⁻²², and it is
    added to the result.
    """
    import torch

    d = qf.shape[1]
    pick = (lambda v: v) if which is None else (lambda v: v[which])
    c_norm, radius, max_sq = pick(lists.c_norm), pick(lists.radius), pick(lists.max_sq)
    qn = q_norm.float()
    q_sq = q_norm * q_norm
    big = float(q_sq.max() + (c_norm * c_norm).max() + max_sq.max())
    slack = 2.0**-18 * big
    # q·c from the fp32 product, plus its rounding bound γ_D‖q‖‖c‖: an upper bound on the true q·c.
    qc = torch.addr(qf @ pick(lists.centres).T, qn, (_gamma(d) * c_norm).float())
    # ‖q − c‖² ≥ lower ‖q‖² + lower ‖c‖² − 2·(upper q·c), less the slack.
    low = torch.add(_lower_sq(q_sq, d).float()[:, None], (_lower_sq(c_norm * c_norm, d) - slack).float()[None, :])
    gap = low.sub_(qc, alpha=2).clamp_min_(0).sqrt_().mul_(1 - 2.0**-22).sub_(radius.float()[None, :] * (1 + 2.0**-22))
    gap_sq = gap.clamp_min_(0).square_().mul_(1 - 2.0**-22)
    if metric == "cosine":
        # q·x = (‖q‖² + ‖x‖² − ‖q − x‖²)/2 with ‖q − x‖ ≥ gap; and q·x ≤ q·c + ‖q‖·r (Cauchy–Schwarz).
        top = torch.add((0.5 * q_sq).float()[:, None], (0.5 * max_sq + slack).float()[None, :])
        sphere = top.sub_(gap_sq, alpha=0.5)
        return torch.minimum(sphere, torch.addr(qc, qn, radius.float()).add_(slack), out=sphere)
    return torch.sub((q_sq + slack).float()[:, None], gap_sq)


def _top(tile, kk: int):
    """(values, column positions) of the best `kk` scores of every row of `tile` [m, w], kk ≤ w.

    The kk-th largest group maximum τ is a lower bound on the row's kk-th score (kk groups each
    hold an element ≥ τ), and every element above τ lies in a group whose maximum is above τ:
    the kk groups with the largest maxima hold the row's best kk values.
    """
    import torch

    m, w = tile.shape
    full = w // _GROUP
    if full < 4 * kk:
        return torch.topk(tile, kk, dim=1)
    groups = tile.as_strided((m, full, _GROUP), (tile.stride(0), _GROUP, 1))
    # max_pool1d: ~2× the speed of amax over the strided [m, w/16, 16] view (measured, 2,304 columns).
    gmax = torch.nn.functional.max_pool1d(tile[:, None, : full * _GROUP], _GROUP, _GROUP)[:, 0]
    gi = torch.topk(gmax, kk, dim=1, sorted=False).indices
    cand = torch.gather(groups, 1, gi[:, :, None].expand(m, kk, _GROUP)).reshape(m, kk * _GROUP)
    pos = (gi[:, :, None] * _GROUP + torch.arange(_GROUP)).reshape(m, kk * _GROUP)
    if full * _GROUP < w:
        cand = torch.cat([cand, tile[:, full * _GROUP :]], 1)
        pos = torch.cat([pos, torch.arange(full * _GROUP, w).expand(m, -1)], 1)
    v, j = torch.topk(cand, kk, dim=1)
    return v, torch.gather(pos, 1, j)


def search_pruned(b, low, sq_norms, max_norm, eps_unit, params, cols, give_up: bool = True,
                  stats: dict | None = None):
    """Exact top-k of every row of `b` against all rows, scoring only lists that can hold a neighbour.

    Returns (indices int64 [N, k], scores float32 [N, k]) in row order, or None when the first
    blocks show that pruning does not pay (the caller then runs the plain search). `stats`, when
    given, receives the number of scores computed and the lists' shape. The products are fp32
    whatever the caller's filter precision (`low`, `eps_unit` are not used): with bf16's ε the
    proof fails on near-tie data (2,000-row isotropic clusters) on almost every row.
    """
    import torch

    from ccli.neighbors.knn_torch import dot_error_bound

    n, d = b.shape
    k = params.k
    excl = 1 if params.exclude_self else 0
    # k + WITNESSES kept: the scores after the k-th are the proof's witnesses; with k = N − 1 there is none to beat.
    kk = min(k + WITNESSES, n - excl)
    lists = Lists(b, params)
    eps_unit = dot_error_bound(torch.float32, d)
    out_i = np.empty((n, k), dtype=np.int64)
    out_v = np.empty((n, k), dtype=np.float32)
    blocks = lists.blocks(BLOCK_ROWS)
    counters = dict(scored=0, probe=0, redone=0, witness=0)

    def run(block):
        """One block (its own counters: blocks run on several threads)."""
        g0, g1 = block
        s0, s1 = int(lists.starts[g0]), int(lists.ends[g1 - 1])
        mine = dict(scored=0, redone=0, witness=0, probe=s1 - s0)
        bi, bv = _block(lists, s0, s1, g0, g1, k, kk, eps_unit, params, cols, mine)
        rows = lists.perm[s0:s1].numpy()
        out_i[rows], out_v[rows] = bi.numpy(), bv.numpy()
        return mine

    def add(mine):
        for key, value in mine.items():
            counters[key] += value

    # Blocks in parallel, one torch thread each: a block is ~100 small ops (tiles of a few hundred
    # rows), and two OpenMP threads per op spun 4× the CPU of one (50k rows: 8.2 vs 2.1 CPU s, 13.2
    # vs 3.5 s wall on the shared 2-core machine). The ops release the GIL, so the threads overlap.
    workers = max(1, torch.get_num_threads())
    probe = min(PROBE_BLOCKS, len(blocks)) if give_up and len(blocks) > PROBE_BLOCKS else 0
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(workers) as pool:
            for mine in pool.map(run, blocks[:probe]):
                add(mine)
            if probe and counters["scored"] > _MAX_SCORED_FRACTION * n * counters["probe"]:
                if stats is not None:
                    stats.update(gave_up=True, scored_fraction=counters["scored"] / float(n) / counters["probe"])
                return None
            for mine in pool.map(run, blocks[probe:]):
                add(mine)
    finally:
        torch.set_num_threads(saved)
    if stats is not None:
        stats.update(scores=counters["scored"], lists=len(lists.sizes), blocks=len(blocks), workers=workers,
                     redone=counters["redone"], witness_rows=counters["witness"],
                     scored_fraction=counters["scored"] / float(n) / n, gave_up=False)
    return out_i, out_v


def _block(lists, s0, s1, g0, g1, k, kk, eps_unit, params, cols, counters):
    """Exact top-k (global ids, float32 scores) of the sorted rows s0..s1 (lists g0..g1)."""
    import torch

    m = s1 - s0
    q = lists.b[s0:s1]
    q_norm = lists.norm[s0:s1]
    max_norm = float(lists.max_norm.max())
    if params.metric == "cosine":
        eps = eps_unit * q_norm * max_norm
    else:
        eps = 2 * eps_unit * q_norm * max_norm + 2.0**-22 * (2 * q_norm * max_norm + max_norm**2)
    taken = []  # sorted positions of every column scored for this block

    def score(groups, own=False):
        """fp32 scores of the block against lists `groups` (the block's own first, if in): best kk per row."""
        pos = torch.from_numpy(np.concatenate([np.arange(lists.starts[g], lists.ends[g]) for g in groups]))
        chunk = lists.b.index_select(0, pos)
        tile = q @ chunk.T
        if params.metric == "l2":
            tile.mul_(2).sub_(lists.sq[pos][None, :])
        if params.exclude_self and groups[0] == g0 and own:
            tile[:, :m].diagonal().fill_(-np.inf)
        counters["scored"] += tile.numel()
        taken.append(pos)
        v, j = _top(tile, min(kk, tile.shape[1]))
        return v, pos[j]

    # The block's own lists first (its queries' nearest rows, mostly): every row gets a k-th score to prune with.
    best_v, best_i = score(np.arange(g0, g1), own=True)
    if best_v.shape[1] < kk:  # fewer columns than k + 1: the later rounds fill it
        pad = kk - best_v.shape[1]
        best_v = torch.cat([best_v, torch.full((m, pad), -np.inf)], 1)
        best_i = torch.cat([best_i, torch.full((m, pad), -1, dtype=torch.int64)], 1)
    # A lower bound on every query's true k-th score from the columns so far (best_v is sorted).
    t = best_v[:, k - 1].double() - eps
    cand = torch.cat([torch.arange(0, g0), torch.arange(g1, len(lists.sizes))])
    if len(cand):
        ub = upper_bounds(lists, q, q_norm, params.metric, cand)  # [m, |cand|]
        # A list stays pending while some query's bound reaches its t (≥: a tie at the k-th score may
        # still enter the top k by a lower id); t rises after every round. Lists most queries need are
        # scored for the whole block (one product, one selection) ...
        pending = torch.ones(len(cand), dtype=torch.bool)
        while True:
            reach = ub >= _down(t)[:, None]
            share = reach.sum(0) * pending
            need = (share >= max(1, int(DENSE_SHARE * m))).nonzero(as_tuple=True)[0]
            if not len(need):
                break
            need = need[torch.argsort(ub[:, need].max(0).values, descending=True)]
            width = np.cumsum(lists.sizes[cand[need].numpy()])
            take = need[: max(1, int(np.searchsorted(width, cols, side="right")))]
            pending[take] = False
            v, i = score(cand[take].numpy())
            best_v, j = torch.topk(torch.cat([best_v, v], 1), kk, dim=1)
            best_i = torch.gather(torch.cat([best_i, i], 1), 1, j)
            t = best_v[:, k - 1].double() - eps
        # ... the others only for the queries that still reach them: at 100k rows around 100 centres the
        # median list taken was needed by 3% of the block's queries (BENCHMARKS.md).
        tlow = _down(t)
        ub_t = ub.T.contiguous()  # one list's bounds for every query: a row
        for g in ((ub >= tlow[:, None]).any(0) & pending).nonzero(as_tuple=True)[0].tolist():
            rows = (ub_t[g] >= tlow).nonzero(as_tuple=True)[0]
            if not len(rows):
                continue
            list_no = int(cand[g])
            a, e = int(lists.starts[list_no]), int(lists.ends[list_no])
            tile = q[rows] @ lists.b[a:e].T
            if params.metric == "l2":
                tile.mul_(2).sub_(lists.sq[a:e][None, :])
            counters["scored"] += tile.numel()
            taken.append(torch.arange(a, e))
            # Only a score above the row's current (k+1)-th can change its best k + 1.
            hit = (tile > best_v[rows, kk - 1][:, None]).any(1)
            if bool(hit.any()):
                r = rows[hit]
                v, j = torch.topk(torch.cat([best_v[r], tile[hit]], 1), kk, dim=1)
                best_v[r] = v
                best_i[r] = torch.gather(torch.cat([best_i[r], torch.arange(a, e).expand(len(r), -1)], 1), 1, j)
                tlow[r] = _down(v[:, k - 1].double() - eps[r])
    # The proof: the j-th fp32 score (j > k) below the k-th − 2ε, so the true best k are among the
    # best j − 1 by fp32; those are rescored in float64. j = k + 1 for most rows (only k rescored);
    # the rows with a near-tie just below the k-th take the last witness, k + WITNESSES.
    limit = best_v[:, k - 1].double() - 2 * eps  # float64: no rounding of the limit upwards
    if kk > k:
        proven = best_v[:, k].double() < limit
        wide = (best_v[:, kk - 1].double() < limit) & ~proven
    else:
        proven = torch.ones(m, dtype=torch.bool)
        wide = torch.zeros(m, dtype=torch.bool)
    out_i, out_v = _ranked(lists, q, best_i[:, :k], k, params.metric)
    w = wide.nonzero(as_tuple=True)[0]
    if len(w):
        counters["witness"] += len(w)
        # (−inf slots, when a row scored fewer than k + WITNESSES columns, hold no column: masked.)
        out_i[w], out_v[w] = _ranked(lists, q[w], best_i[w, : kk - 1].clamp_min(0), k, params.metric,
                                     valid=best_v[w, : kk - 1] > -np.inf)
        proven |= wide
    redo = (~proven).nonzero(as_tuple=True)[0]
    if len(redo):
        counters["redone"] += len(redo)
        ri, rv = _exact_rows(lists, q[redo], q_norm[redo], redo + s0, torch.cat(taken), k, params)
        out_i[redo], out_v[redo] = ri, rv
    if params.metric == "l2":
        out_v = (-out_v).clamp_min_(0).sqrt_()
    return out_i, out_v.float()


def _ranked(lists, q, pos, k, metric, valid=None):
    """Candidates (sorted positions [m, c]) rescored in float64 (`exact_scores`), the best k: ties to the lower id."""
    import torch

    from ccli.neighbors.knn_torch import exact_scores

    gid = lists.perm[pos]
    score = exact_scores(q, lists.b, pos, metric)
    if valid is not None:
        score.masked_fill_(~valid, -np.inf)
    by_id = torch.argsort(gid, dim=1)
    gid, score = torch.gather(gid, 1, by_id), torch.gather(score, 1, by_id)
    top, rank = torch.sort(score, dim=1, descending=True, stable=True)
    return torch.gather(gid, 1, rank[:, :k]), top[:, :k]


def _exact_rows(lists, q, q_norm, rows_sorted, columns, k, params):
    """float64 top-k of the rows `q` over the sorted positions `columns` (every column that can hold a neighbour).

    A float64 product over all the columns keeps every column within its error bound of the
    k-th (a superset of the true top k), which `_ranked` orders as everywhere else.
    """
    import torch

    x = lists.b[columns].double()
    s = q.double() @ x.T
    max_norm = float(lists.max_norm.max())
    if params.metric == "l2":
        s = 2 * s - (x * x).sum(1)[None, :]
        slack = 1e-12 * (q_norm[:, None] + max_norm) ** 2
    else:
        slack = 1e-12 * q_norm[:, None] * max_norm
    if params.exclude_self:
        s.masked_fill_(columns[None, :] == rows_sorted[:, None], -np.inf)
    kth = torch.topk(s, k, dim=1).values[:, -1:]
    wide = int((s >= kth - slack).sum(1).max())
    keep_v, keep = torch.topk(s, wide, dim=1)
    # A kept column below the slack scores below k others and stays out; a −inf one (self, or
    # padding in a row with few columns) must not be rescored into the list.
    return _ranked(lists, q, columns[keep], k, params.metric, valid=keep_v > -np.inf)
