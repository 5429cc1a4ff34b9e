"""Clustering metrics computed from one contingency table.

Everything is derived from the K_true × K_pred table of counts, built with a single
`bincount` over the N samples. After that, every metric costs O(K_true · K_pred), so scoring
ten million samples is dominated by one pass over the labels rather than by the repeated
`np.unique` calls scikit-learn makes per metric.

NMI and ARI follow scikit-learn's formulas operation for operation (same orientation, same
order of non-zero entries, same summations), so the values are bit-identical to
`normalized_mutual_info_score` / `adjusted_rand_score`, not merely close.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import log

import numpy as np

# Above this many cells the dense table would not fit comfortably in memory (8 bytes each).
MAX_DENSE_CELLS = 100_000_000


def encode_labels(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map arbitrary integer label values to codes 0..K-1 (sorted by value).

    Returns (codes, unique_values). Small value ranges use a bincount lookup table, O(N),
    instead of the O(N log N) sort behind `np.unique`.
    """
    values = np.asarray(values)
    if values.size == 0:
        return values.astype(np.int64), values[:0]
    lo, hi = int(values.min()), int(values.max())
    span = hi - lo + 1
    if span <= max(4 * values.size, 1 << 16):
        shifted = values - lo if lo != 0 else values
        present = np.bincount(shifted.astype(np.intp, copy=False), minlength=span) > 0
        uniques = (np.flatnonzero(present) + lo).astype(values.dtype)
        if present.all():
            # Already dense codes 0..K-1 after the shift (the usual case): no gather needed.
            return shifted.astype(np.int64, copy=False), uniques
        lookup = np.cumsum(present, dtype=np.int64) - 1
        return lookup[shifted], uniques
    uniques, codes = np.unique(values, return_inverse=True)
    return codes.astype(np.int64, copy=False), uniques


@dataclass
class Contingency:
    """Counts table with rows = true classes and columns = predicted clusters."""

    table: np.ndarray  # int64 [K_true, K_pred]
    classes: np.ndarray  # true label value of each row
    clusters: np.ndarray  # predicted label value of each column

    @property
    def n(self) -> int:
        return int(self.table.sum())


def contingency(labels_true, labels_pred) -> Contingency:
    true_codes, classes = encode_labels(labels_true)
    pred_codes, clusters = encode_labels(labels_pred)
    k_true, k_pred = len(classes), len(clusters)
    if k_true * k_pred > MAX_DENSE_CELLS:
        raise MemoryError(
            f"{k_true} classes × {k_pred} clusters is more than {MAX_DENSE_CELLS:,} table cells"
        )
    cells = k_true * k_pred
    # Blocks of rows keep the temporaries cache-sized (about 1.7x faster at N = 10^7 than
    # one bincount over a full-length temporary), as long as a block outweighs the table.
    block = max(1 << 18, cells)
    table = np.zeros(cells, dtype=np.int64)
    for start in range(0, len(true_codes), block):
        flat = true_codes[start : start + block] * k_pred
        flat += pred_codes[start : start + block]
        table += np.bincount(flat, minlength=cells)
    return Contingency(table.reshape(k_true, k_pred), classes, clusters)


# Above this many rows and columns (the smaller side), scipy's compiled solver is cheaper than
# its import (about 0.5 s); below, the NumPy port below runs in milliseconds. Both run the same
# algorithm with the same tie-breaking, so the choice never changes a result (tested).
_OWN_LSAP_MAX = 128


def linear_sum_assignment(cost: np.ndarray, maximize: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """scipy.optimize.linear_sum_assignment, result for result: small problems in NumPy, large in scipy."""
    cost = np.asarray(cost)
    if cost.ndim != 2:
        raise ValueError(f"expected a matrix (2-D array), got a {cost.ndim}-D array")
    if min(cost.shape) > _OWN_LSAP_MAX:
        from scipy.optimize import linear_sum_assignment as scipy_lsap

        return scipy_lsap(cost, maximize=maximize)
    return _lsap(cost, maximize)


def _lsap(cost: np.ndarray, maximize: bool) -> tuple[np.ndarray, np.ndarray]:
    """Crouse's shortest augmenting path (IEEE TAES 2016), ported from scipy's rectangular_lsap.cpp.

    Same row order, same `remaining` bookkeeping and the same tie rule (among equally short
    paths prefer one that ends in a free column), so even with ties the assignment equals
    scipy's. The inner loop over columns is vectorised.
    """
    c = np.array(cost, dtype=np.float64)
    nr, nc = c.shape
    if nr == 0 or nc == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    transpose = nc < nr
    if transpose:
        c = c.T.copy()
        nr, nc = nc, nr
    if maximize:
        c = -c
    if np.isnan(c).any() or np.isneginf(c).any():
        raise ValueError("matrix contains invalid numeric entries")
    u = np.zeros(nr)
    v = np.zeros(nc)
    path = np.full(nc, -1, dtype=np.int64)
    col4row = np.full(nr, -1, dtype=np.int64)
    row4col = np.full(nc, -1, dtype=np.int64)
    for cur in range(nr):
        sr = np.zeros(nr, dtype=bool)
        sc = np.zeros(nc, dtype=bool)
        spc = np.full(nc, np.inf)
        remaining = np.arange(nc - 1, -1, -1, dtype=np.int64)
        num = nc
        min_val = 0.0
        i = cur
        sink = -1
        while sink == -1:
            sr[i] = True
            rem = remaining[:num]
            r = min_val + c[i, rem] - u[i] - v[rem]
            better = r < spc[rem]
            path[rem[better]] = i
            spc[rem[better]] = r[better]
            vals = spc[rem]
            lowest = vals.min()
            if lowest == np.inf:
                raise ValueError("cost matrix is infeasible")
            at_min = vals == lowest
            free_min = np.flatnonzero(at_min & (row4col[rem] == -1))
            index = int(free_min[-1]) if len(free_min) else int(np.flatnonzero(at_min)[0])
            min_val = float(lowest)
            j = int(rem[index])
            if row4col[j] == -1:
                sink = j
            else:
                i = int(row4col[j])
            sc[j] = True
            num -= 1
            remaining[index] = remaining[num]
        u[cur] += min_val
        others = np.flatnonzero(sr)
        others = others[others != cur]
        u[others] += min_val - spc[col4row[others]]
        v[sc] -= min_val - spc[sc]
        j = sink
        while True:
            i = int(path[j])
            row4col[j] = i
            col4row[i], j = j, int(col4row[i])
            if i == cur:
                break
    if transpose:
        order = np.argsort(col4row, kind="stable")
        return col4row[order], order.astype(np.int64)
    return np.arange(nr, dtype=np.int64), col4row


def hungarian_accuracy(c: Contingency) -> tuple[float, dict[int, int]]:
    """ACC: the best one-to-one matching of clusters to classes (Kuhn-Munkres), as a fraction.

    With K_pred ≠ K_true, min(K_pred, K_true) pairs are matched and the samples of unmatched
    clusters count as errors. Returns the accuracy and the mapping cluster value -> class value.
    """
    rows, cols = linear_sum_assignment(c.table, maximize=True)
    matched = int(c.table[rows, cols].sum())
    mapping = {int(c.clusters[j]): int(c.classes[i]) for i, j in zip(rows, cols)}
    return matched / c.n, mapping


def _entropy_of_counts(counts: np.ndarray) -> float:
    # scikit-learn's `_entropy`, applied to the marginal counts instead of raw labels.
    pi = counts[counts > 0].astype(np.float64)
    if pi.size <= 1:
        return 0.0
    pi_sum = np.sum(pi)
    return float(-np.sum((pi / pi_sum) * (np.log(pi) - log(pi_sum))))


def mutual_information(c: Contingency) -> float:
    table = c.table.astype(np.float64)
    nzx, nzy = np.nonzero(table)
    nz_val = table[nzx, nzy]
    contingency_sum = table.sum()
    pi = table.sum(axis=1)
    pj = table.sum(axis=0)
    if pi.size == 1 or pj.size == 1:
        return 0.0
    log_contingency_nm = np.log(nz_val)
    contingency_nm = nz_val / contingency_sum
    outer = pi.take(nzx).astype(np.int64, copy=False) * pj.take(nzy).astype(np.int64, copy=False)
    log_outer = -np.log(outer) + log(pi.sum()) + log(pj.sum())
    mi = contingency_nm * (log_contingency_nm - log(contingency_sum)) + contingency_nm * log_outer
    mi = np.where(np.abs(mi) < np.finfo(mi.dtype).eps, 0.0, mi)
    return float(np.clip(mi.sum(), 0.0, None))


def normalized_mutual_information(c: Contingency) -> float:
    """NMI with the arithmetic-mean normaliser (scikit-learn's default)."""
    k_true, k_pred = c.table.shape
    if k_true == k_pred == 1 or k_true == k_pred == 0:
        return 1.0
    mi = mutual_information(c)
    if mi == 0:
        return 0.0
    h_true = _entropy_of_counts(c.table.sum(axis=1))
    h_pred = _entropy_of_counts(c.table.sum(axis=0))
    return float(mi / np.mean([h_true, h_pred]))


def adjusted_rand_index(c: Contingency) -> float:
    """ARI from the pair-confusion matrix, in Python integers (no overflow at N = 10^7)."""
    n = np.int64(c.n)
    table = c.table
    n_c = table.sum(axis=1)
    n_k = table.sum(axis=0)
    sum_squares = int((table.astype(np.int64) ** 2).sum())
    # scikit-learn's pair_confusion_matrix(true, pred): tp = pairs together in both,
    # fp = together in the prediction only, fn = together in the truth only.
    tp = sum_squares - int(n)
    fp = int(table.dot(n_k).sum()) - sum_squares
    fn = int(table.T.dot(n_c).sum()) - sum_squares
    tn = int(n) ** 2 - fp - fn - sum_squares
    if fn == 0 and fp == 0:
        return 1.0
    return 2.0 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn))


def weighted_prf(c: Contingency) -> tuple[float, float, float]:
    """Size-weighted precision, recall and F of each cluster's majority class (seed 004, Eqs. 16-20).

    For cluster c with size L_c and majority class t: p_c = L_{c,t}/L_c,
    r_c = L_{c,t}/(number of class-t samples) (spec ambiguity A18), and each of P, R, F is
    the L_c/N-weighted mean over clusters. P equals cluster purity.
    """
    table = c.table  # [true, pred]
    sizes = table.sum(axis=0).astype(np.float64)  # L_c per cluster
    nonempty = sizes > 0
    majority = table.argmax(axis=0)
    hits = table[majority, np.arange(table.shape[1])].astype(np.float64)  # L_{c,t}
    class_totals = table.sum(axis=1).astype(np.float64)[majority]
    p = np.divide(hits, sizes, out=np.zeros_like(hits), where=nonempty)
    r = np.divide(hits, class_totals, out=np.zeros_like(hits), where=class_totals > 0)
    f = np.divide(2 * p * r, p + r, out=np.zeros_like(hits), where=(p + r) > 0)
    w = sizes / sizes.sum()
    return float(w @ p), float(w @ r), float(w @ f)


def pairwise_prf(c: Contingency) -> tuple[float, float, float]:
    """Pair-counting precision/recall/F: over pairs put together by the clustering, how many
    share a class (P), and over same-class pairs, how many were put together (R)."""
    def pairs(x):
        x = x.astype(np.int64)
        return int((x * (x - 1) // 2).sum())

    together_and_same = pairs(c.table)
    together = pairs(c.table.sum(axis=0))
    same = pairs(c.table.sum(axis=1))
    p = together_and_same / together if together else 0.0
    r = together_and_same / same if same else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def clustering_scores(labels_true, labels_pred, *, pairwise: bool = False) -> dict:
    """All of ccli's clustering metrics for one labelling, as a JSON-ready dict."""
    c = contingency(labels_true, labels_pred)
    acc, _ = hungarian_accuracy(c)
    precision, recall, f1 = weighted_prf(c)
    scores = {
        "n": c.n,
        "n_classes": int(c.table.shape[0]),
        "n_clusters": int(c.table.shape[1]),
        "acc": acc,
        "nmi": normalized_mutual_information(c),
        "ari": adjusted_rand_index(c),
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }
    if pairwise:
        p, r, f = pairwise_prf(c)
        scores["pairwise"] = {"precision": p, "recall": r, "f1": f}
    return scores
