"""The exact torch kNN (low-precision filter + fp32 rescoring) against float64 brute force."""

import numpy as np
import pytest
import torch

from ccli.neighbors import knn_torch as K
from ccli.neighbors.knn import knn
from ccli.neighbors.knn_torch import dot_error_bound
from ccli.neighbors.params import SearchParams


def assert_exact(x, idx, scores, k, metric, exclude_self=True):
    """Ranked scores equal float64 brute force's, and every listed id really has its listed score.

    (Ids themselves may swap between two points whose scores differ by fp32 rounding only.)
    """
    ref_idx, ref_scores = brute(x, k, metric, exclude_self)
    np.testing.assert_allclose(scores, ref_scores, rtol=2e-5, atol=2e-5)
    own = np.take_along_axis(all_scores(x, metric), idx, axis=1)
    np.testing.assert_allclose(own, ref_scores, rtol=2e-5, atol=2e-5)
    assert (np.sort(idx, 1) == np.sort(ref_idx, 1)).mean() > 0.99
    for row in idx:
        assert len(set(row)) == k


def all_scores(x, metric):
    """Float64 similarity (cosine) or distance (l2) of every pair."""
    x = x.astype(np.float64)
    if metric == "cosine":
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-300)
        return x @ x.T
    return np.sqrt(np.maximum(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1), 0))


def brute(x, k, metric, exclude_self=True):
    score = all_scores(x, metric)
    if metric == "l2":
        score = -score
    if exclude_self:
        np.fill_diagonal(score, -np.inf)
    order = np.argsort(-score, axis=1, kind="stable")[:, :k]
    vals = np.take_along_axis(score, order, axis=1)
    return order, (vals if metric == "cosine" else -vals)


@pytest.fixture(params=["heaps", "torch-candidates", "fp32-filter"])
def path(request, monkeypatch):
    """Small tiles so every search crosses several query blocks and column chunks."""
    monkeypatch.setattr(K, "_TORCH_QUERY_ROWS", 64)
    monkeypatch.setattr(K, "_TORCH_CHUNK_COLS", 96)
    if request.param == "torch-candidates":
        monkeypatch.setattr(K, "faiss_available", lambda: False)
    if request.param == "fp32-filter":
        monkeypatch.setattr(K, "filter_dtype", lambda device: torch.float32)
    return request.param


@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("exclude_self", [True, False])
def test_matches_float64_brute_force(path, metric, exclude_self):
    rng = np.random.default_rng(7)
    # Clustered rows (many close neighbours, the filter's hard case) with distinct scales for l2.
    centres = rng.standard_normal((12, 24))
    x = (centres[rng.integers(0, 12, 400)] + 0.4 * rng.standard_normal((400, 24))) * rng.uniform(0.5, 3, (400, 1))
    x = x.astype(np.float32)
    idx, scores = knn(x, SearchParams(k=15, metric=metric, backend="torch", exclude_self=exclude_self))
    assert_exact(x, idx, scores, 15, metric, exclude_self)


def test_duplicates_fall_back_and_stay_exact(path, monkeypatch):
    """Rows with hundreds of exact ties overflow the heap's proof; the fp32 fallback answers them."""
    monkeypatch.setattr(K, "_MAX_CANDIDATES_PER_ROW", 8)
    rng = np.random.default_rng(3)
    base = rng.standard_normal((30, 10)).astype(np.float32)
    x = np.concatenate([np.repeat(base[:1], 300, 0), base[1:], rng.standard_normal((200, 10)).astype(np.float32)])
    idx, scores = knn(x, SearchParams(k=20, backend="torch"))
    _, ref_scores = brute(x, 20, "cosine")
    np.testing.assert_allclose(scores, ref_scores, atol=2e-5)
    assert not (idx == np.arange(len(x))[:, None]).any()
    # The 300 copies of row 0 list only other copies (all at similarity 1).
    assert (idx[:300] < 300).all()


def test_bf16_error_bound_holds():
    rng = np.random.default_rng(0)
    for d in (8, 128, 512):
        q = rng.standard_normal((200, d))
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        exact = q @ q.T
        t = torch.from_numpy(q.astype(np.float32)).bfloat16()
        approx = (t @ t.T).double().numpy()
        assert np.abs(approx - exact).max() <= dot_error_bound(torch.bfloat16, d)
    # fp32's bound is tiny, bf16's a few 2⁻⁸.
    assert dot_error_bound(torch.float32, 128) < 1e-5 < dot_error_bound(torch.bfloat16, 128) < 0.02


def test_k_close_to_n(path):
    x = np.random.default_rng(5).standard_normal((40, 6)).astype(np.float32)
    idx, scores = knn(x, SearchParams(k=39, backend="torch"))
    assert_exact(x, idx, scores, 39, "cosine")
