"""The method-neutral k-means (ccli.fit.kmeans) against scikit-learn on separable blobs."""

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from ccli.fit.kmeans import faiss_available, kmeans


@pytest.mark.parametrize("backend", ["sklearn", "faiss"])
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
