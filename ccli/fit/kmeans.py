"""k-means on rows of a matrix: the one implementation the kmeans baseline and every method
that initialises centres by k-means (selfpaced, cdec, …) call, so they cannot drift apart.

faiss (when importable) runs Lloyd iterations with `n_init` restarts and keeps the lowest
inertia, as scikit-learn does; both backends see every point (faiss's default subsamples to
256 points per centroid, which is a different algorithm).
"""

from __future__ import annotations

import numpy as np


def kmeans(x: np.ndarray, k: int, *, backend: str = "auto", n_init: int = 10, max_iter: int = 300,
           seed: int = 0) -> tuple[np.ndarray, np.ndarray, float, str]:
    """Cluster rows of x into k groups; returns (labels int64 [N], centroids [k, D], inertia, backend used)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if backend == "auto":
        backend = "faiss" if faiss_available() else "sklearn"
    if backend == "faiss":
        import faiss

        n, d = x.shape
        km = faiss.Kmeans(d, k, niter=max_iter, nredo=n_init, seed=seed, verbose=False,
                          max_points_per_centroid=max(256, -(-n // k) + 1), min_points_per_centroid=1)
        km.train(x)
        distances, labels = km.index.search(x, 1)
        return labels[:, 0].astype(np.int64), km.centroids.copy(), float(distances.sum()), "faiss"
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=k, n_init=n_init, max_iter=max_iter, random_state=seed).fit(x)
    return km.labels_.astype(np.int64), km.cluster_centers_.astype(np.float32), float(km.inertia_), "sklearn"


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True
