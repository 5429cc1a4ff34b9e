"""Metrics against scikit-learn/scipy on many random cases, and P/R/F against hand counts."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix, pair_confusion_matrix

from ccli.metrics import (
    adjusted_rand_index,
    clustering_scores,
    contingency,
    encode_labels,
    hungarian_accuracy,
    normalized_mutual_information,
    pairwise_prf,
    weighted_prf,
)


def reference_acc(y, p):
    table = contingency_matrix(y, p)  # [classes, clusters]
    rows, cols = linear_sum_assignment(-table)
    return table[rows, cols].sum() / len(y)


def brute_force_acc(y, p):
    """Best accuracy over every injective map between clusters and classes (tiny K only)."""
    classes, clusters = np.unique(y), np.unique(p)
    best = 0
    if len(clusters) <= len(classes):
        for perm in itertools.permutations(classes, len(clusters)):
            mapping = dict(zip(clusters, perm))
            best = max(best, sum(mapping[c] == t for c, t in zip(p, y)))
    else:
        for perm in itertools.permutations(clusters, len(classes)):
            mapping = dict(zip(perm, classes))
            best = max(best, sum(mapping.get(c, None) == t for c, t in zip(p, y)))
    return best / len(y)


@pytest.mark.parametrize("seed", range(300))
def test_matches_sklearn_exactly_on_random_labelings(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    k_true = int(rng.integers(1, 15))
    k_pred = int(rng.integers(1, 20))  # often != k_true
    # label values that are not 0..K-1: shifted, scaled, negative, sparse
    y = rng.integers(0, k_true, n) * int(rng.integers(1, 9)) - int(rng.integers(0, 50))
    p = rng.integers(0, k_pred, n) * int(rng.integers(1, 1000)) + int(rng.integers(-5, 5))
    if seed % 3 == 0:  # correlated predictions, not just noise
        p = np.where(rng.random(n) < 0.7, y * 3 + 1, p)
    scores = clustering_scores(y, p)
    assert scores["nmi"] == normalized_mutual_info_score(y, p)
    assert scores["ari"] == adjusted_rand_score(y, p)
    assert scores["acc"] == pytest.approx(reference_acc(y, p), abs=1e-15)
    assert scores["n_classes"] == len(np.unique(y))
    assert scores["n_clusters"] == len(np.unique(p))


@pytest.mark.parametrize("seed", range(40))
def test_hungarian_equals_brute_force_when_cluster_count_differs(seed):
    rng = np.random.default_rng(1000 + seed)
    n = int(rng.integers(5, 40))
    y = rng.integers(0, int(rng.integers(1, 5)), n)
    p = rng.integers(0, int(rng.integers(1, 6)), n) + 10
    acc, mapping = hungarian_accuracy(contingency(y, p))
    assert acc == pytest.approx(brute_force_acc(y, p))
    assert len(set(mapping.values())) == len(mapping)  # one-to-one


def test_contingency_orientation_and_values():
    y = np.array([5, 5, 7, 7, 7, -1])
    p = np.array([0, 1, 1, 1, 1, 1])
    c = contingency(y, p)
    assert c.classes.tolist() == [-1, 5, 7]
    assert c.clusters.tolist() == [0, 1]
    assert c.table.tolist() == [[0, 1], [1, 1], [0, 3]]
    np.testing.assert_array_equal(c.table, contingency_matrix(y, p))


def test_encode_labels_small_and_huge_ranges():
    for values in (np.array([3, -2, 3, 10]), np.array([10**15, -(10**15), 7, 7])):
        codes, uniques = encode_labels(values)
        ref_u, ref_codes = np.unique(values, return_inverse=True)
        np.testing.assert_array_equal(uniques, ref_u)
        np.testing.assert_array_equal(codes, ref_codes)


def test_weighted_prf_hand_computed():
    # cluster A: 3×class0 + 1×class1 ; cluster B: 2×class1 ; class totals: c0=3, c1=3
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([9, 9, 9, 9, 4, 4])
    precision, recall, f1 = weighted_prf(contingency(y, p))
    # A: L=4, t=0, p=3/4, r=3/3 ; B: L=2, t=1, p=2/2, r=2/3
    p_a, r_a, p_b, r_b = 3 / 4, 1.0, 1.0, 2 / 3
    assert precision == pytest.approx(4 / 6 * p_a + 2 / 6 * p_b)
    assert recall == pytest.approx(4 / 6 * r_a + 2 / 6 * r_b)
    f = lambda a, b: 2 * a * b / (a + b)  # noqa: E731
    assert f1 == pytest.approx(4 / 6 * f(p_a, r_a) + 2 / 6 * f(p_b, r_b))


def test_weighted_precision_is_purity_and_bounds_acc():
    rng = np.random.default_rng(7)
    for _ in range(50):
        y = rng.integers(0, 6, 200)
        p = rng.integers(0, 9, 200)
        c = contingency(y, p)
        purity = c.table.max(axis=0).sum() / c.n
        precision, _, _ = weighted_prf(c)
        assert precision == pytest.approx(purity)
        assert precision >= hungarian_accuracy(c)[0] - 1e-12


@pytest.mark.parametrize("seed", range(30))
def test_pairwise_prf_matches_pair_confusion(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 5, 120)
    p = rng.integers(0, 7, 120)
    (tn, fp), (fn, tp) = pair_confusion_matrix(y, p)  # counts ordered pairs
    precision, recall, f1 = pairwise_prf(contingency(y, p))
    assert precision == pytest.approx(tp / (tp + fp))
    assert recall == pytest.approx(tp / (tp + fn))
    assert f1 == pytest.approx(2 * precision * recall / (precision + recall))


def test_degenerate_cases_follow_sklearn():
    for y, p in (([0, 0, 0], [1, 1, 1]), ([0, 1, 2], [0, 0, 0]), ([0, 0, 0], [0, 1, 2]), ([4], [2])):
        y, p = np.array(y), np.array(p)
        c = contingency(y, p)
        assert normalized_mutual_information(c) == normalized_mutual_info_score(y, p)
        assert adjusted_rand_index(c) == adjusted_rand_score(y, p)


def test_ari_no_overflow_at_ten_million_scale():
    # pair counts near n^2/2 ~ 5e13 multiply to ~1e27: must not overflow int64
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 3_000_000)
    p = np.where(rng.random(y.size) < 0.9, y, rng.integers(0, 3, y.size))
    assert adjusted_rand_index(contingency(y, p)) == adjusted_rand_score(y, p)
