"""The method-neutral k-means (ccli.fit.kmeans) against scikit-learn on separable blobs."""

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from ccli.fit.kmeans import faiss_available, kmeans


@pytest.mark.parametrize("backend", ["sklearn", "faiss", "torch"])
def test_kmeans_recovers_blobs_and_reports_its_inertia(backend):
    if backend == "faiss" and not faiss_available():
        pytest.skip("faiss is not installed")
    x, truth = make_blobs(n_samples=300, centers=4, n_features=5, cluster_std=0.5, random_state=0)
    labels, centroids, inertia, used = kmeans(x, 4, backend=backend, n_init=3, seed=0)
    assert used == backend
    assert adjusted_rand_score(truth, labels) == 1.0
    assert centroids.shape == (4, 5)
    expected = float(((x - centroids[labels]) ** 2).sum())
    assert inertia == pytest.approx(expected, rel=1e-3)


def test_torch_kmeans_inertia_no_worse_than_sklearn_on_digits():
    from sklearn.cluster import KMeans
    from sklearn.datasets import load_digits

    from ccli.fit.kmeans import inertia_of

    x = load_digits().data.astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    calls = []
    labels, centroids, inertia, used = kmeans(x, 10, backend="torch", seed=0, progress=lambda d, t: calls.append((d, t)))
    assert used == "torch" and labels.shape == (1797,)
    assert inertia == pytest.approx(inertia_of(x, labels, centroids), rel=1e-5)
    # Labels are the nearest centres of the returned centroids.
    d = ((x[:, None, :] - centroids[None]) ** 2).sum(-1)
    assert (d[np.arange(len(x)), labels] <= d.min(1) + 1e-6).all()
    reference = KMeans(10, n_init=10, random_state=0).fit(x).inertia_
    assert inertia <= reference * (1 + 1e-3)
    # Progress reaches its total; an early stop jumps to the end of each restart.
    assert calls[-1] == (10 * 300, 10 * 300) and len(calls) < 10 * 300


def test_torch_kmeans_refills_empty_clusters():
    x = np.concatenate([np.zeros((50, 2)), np.ones((50, 2))]).astype(np.float32)
    x[:3] += np.array([[0.1, 0], [0, 0.1], [0.1, 0.1]], dtype=np.float32)
    labels, centroids, _, _ = kmeans(x, 4, backend="torch", n_init=2, seed=1)
    assert len(np.unique(labels)) == 4


def test_torch_update_is_the_mean_of_assigned_rows_across_blocks():
    # The M-step sums block by block (one-hot products); with 7-row blocks over 50 rows the
    # means must still equal numpy's float64 means of each cluster's rows.
    import torch

    from ccli.fit.kmeans import _update

    rng = np.random.default_rng(3)
    x = rng.standard_normal((50, 6)).astype(np.float32)
    labels = rng.integers(0, 4, 50)
    labels[:4] = np.arange(4)  # every cluster non-empty
    xt = torch.from_numpy(x)
    got = _update(xt, (xt * xt).sum(1), torch.from_numpy(labels), torch.zeros(4, 6), 4, rows=7).numpy()
    want = np.stack([x[labels == c].astype(np.float64).mean(0) for c in range(4)])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
