"""k-means on a features artifact: the quick baseline every report compares against.

faiss (when importable) runs Lloyd iterations with `n_init` restarts and keeps the lowest
inertia, as scikit-learn does; both backends see every point (faiss's default subsamples to
256 points per centroid, which is a different algorithm). Features are L2-normalised first
by default because contrastive embeddings are trained on the sphere, where Euclidean k-means
on unit vectors is spherical (cosine) k-means.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ccli import log
from ccli.errors import BadInput
from ccli.methods.registry import Inputs, Prediction, RunContext


@dataclass
class Config:
    num_clusters: int = 0  # 0 = the dataset's class count
    backend: Literal["auto", "faiss", "sklearn"] = "auto"
    n_init: int = 10
    max_iter: int = 300
    normalize: bool = True
    view: str = ""  # '' = the `features` dataset; otherwise views/<view>
    seed: int = 42


def kmeans(x: np.ndarray, k: int, *, backend: str = "auto", n_init: int = 10, max_iter: int = 300,
           seed: int = 0) -> tuple[np.ndarray, np.ndarray, float, str]:
    """Cluster rows of x into k groups; returns (labels int64 [N], centroids [k, D], inertia, backend used)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if backend == "auto":
        backend = "faiss" if _faiss_available() else "sklearn"
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


def _faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def validate(inputs: Inputs, config: Config, num_clusters: int) -> None:
    if config.backend == "faiss" and not _faiss_available():
        raise BadInput("backend=faiss was requested but faiss is not installed (use backend=sklearn).")
    if inputs.features is not None and config.view:
        from ccli.store import open_artifact

        with open_artifact(inputs.features, "features", what="--features") as art:
            if f"views/{config.view}" not in art:
                raise BadInput(f"--features {inputs.features} has no view '{config.view}'.")


def _features_path(ctx: RunContext) -> str:
    """The features to cluster: --features, else embed --data with a (pre)trained backbone via the cache."""
    if ctx.inputs.features is not None:
        return str(ctx.inputs.features)
    from ccli.methods.representation import features_from_images

    return str(features_from_images(ctx))


def run(ctx: RunContext) -> Prediction:
    from ccli.store import open_artifact

    config: Config = ctx.config
    path = _features_path(ctx)
    with open_artifact(path, "features", what="--features") as art:
        x = art.read(f"views/{config.view}" if config.view else "features").astype(np.float32)
    if config.normalize:
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    labels, _, inertia, backend = kmeans(x, ctx.num_clusters, backend=config.backend, n_init=config.n_init,
                                         max_iter=config.max_iter, seed=config.seed)
    log.debug(f"k-means ({backend}) on {x.shape[0]:,}×{x.shape[1]} features: inertia {inertia:.4g}")
    return Prediction(labels, None, {"backend": backend, "inertia": inertia, "features": path})
