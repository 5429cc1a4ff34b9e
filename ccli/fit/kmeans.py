"""k-means on rows of a matrix: the one implementation the kmeans baseline and every method
that initialises centres by k-means (selfpaced, cdec, …) call, so they cannot drift apart.

Backends:
- 'torch' (what 'auto' picks): Lloyd iterations in blocked fp32 products on the CPU or a GPU,
  greedy k-means++ initialisation (scikit-learn's: 2 + ⌊ln k⌋ local trials per centre), stopped
  when the centres move less than `tol` × the mean feature variance (scikit-learn's criterion)
  or the labels stop changing, empty clusters refilled by the points farthest from their centre;
  `n_init` restarts keep the lowest inertia.
- 'faiss': faiss's Lloyd iterations (random initialisation, no early stop) on every point
  (faiss's default subsamples to 256 points per centroid, which is a different algorithm).
- 'sklearn': scikit-learn's KMeans.

With k-means++ seeding and early stopping, 10 restarts reach the same or lower inertia than
faiss's 10 random-start restarts of 300 iterations (faiss's generic build is ~1.7× faster on a
quiet 2-core machine, 10× slower or worse when its OpenMP threads share a busy one); 3 restarts
were worse on digits and on one Fashion-MNIST seed, so 10 stays the default
(BENCHMARKS.md, "Performance and scale (issue 17)").
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

BACKENDS = ("auto", "torch", "faiss", "sklearn")

# Rows per assignment block: bounds the [rows, k] distance temporary (fp32) to ~64 MB.
_BLOCK_BYTES = 64 * 2**20
# k-means++ runs on at most this many points (a seeded sample): its cost is k × trials × N × D.
_INIT_SAMPLE_PER_CENTRE = 256
_INIT_SAMPLE_MIN = 50_000


def kmeans(x: np.ndarray, k: int, *, backend: str = "auto", n_init: int = 10, max_iter: int = 300,
           seed: int = 0, tol: float = 1e-4, device: str = "cpu",
           progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray, float, str]:
    """Cluster rows of x into k groups; returns (labels int64 [N], centroids [k, D], inertia, backend used).

    `progress(done, total)` is called after every Lloyd iteration (total = n_init × max_iter;
    an early stop jumps `done` to the end of its restart).
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    if backend not in BACKENDS:
        raise ValueError(f"unknown k-means backend {backend!r}")
    if backend == "auto":
        backend = "torch"
    if backend == "faiss":
        import faiss

        n, d = x.shape
        km = faiss.Kmeans(d, k, niter=max_iter, nredo=n_init, seed=seed, verbose=False,
                          max_points_per_centroid=max(256, -(-n // k) + 1), min_points_per_centroid=1)
        km.train(x)
        distances, labels = km.index.search(x, 1)
        if progress is not None:
            progress(n_init * max_iter, n_init * max_iter)
        return labels[:, 0].astype(np.int64), km.centroids.copy(), float(distances.sum()), "faiss"
    if backend == "sklearn":
        from sklearn.cluster import KMeans

        km = KMeans(n_clusters=k, n_init=n_init, max_iter=max_iter, tol=tol, random_state=seed).fit(x)
        if progress is not None:
            progress(n_init * max_iter, n_init * max_iter)
        return km.labels_.astype(np.int64), km.cluster_centers_.astype(np.float32), float(km.inertia_), "sklearn"
    labels, centroids, inertia = _kmeans_torch(x, k, n_init=n_init, max_iter=max_iter, seed=seed, tol=tol,
                                               device=device, progress=progress)
    return labels, centroids, inertia, "torch"


def inertia_of(x: np.ndarray, labels: np.ndarray, centroids: np.ndarray) -> float:
    """Σ‖x_i − c_{label_i}‖² in float64, block by block (an exact referee between backends)."""
    total = 0.0
    for start in range(0, len(x), 65536):
        diff = x[start : start + 65536].astype(np.float64) - centroids[labels[start : start + 65536]].astype(np.float64)
        total += float(np.einsum("nd,nd->", diff, diff))
    return total


def _kmeans_torch(x, k, *, n_init, max_iter, seed, tol, device, progress):
    import torch

    dev = torch.device(device if device not in ("", "auto") else ("cuda" if torch.cuda.is_available() else "cpu"))
    xt = torch.from_numpy(x).to(dev)
    n, d = xt.shape
    if not 1 <= k <= n:
        raise ValueError(f"k={k} must be between 1 and the number of points ({n})")
    x_sq = (xt * xt).sum(1)
    # scikit-learn's tolerance: relative to the mean per-feature variance of the data.
    tol_abs = float(tol * xt.double().var(0, unbiased=False).mean()) if n > 1 else 0.0
    rows = int(max(1, min(n, _BLOCK_BYTES // (4 * max(k, 1)))))
    rng = np.random.default_rng(seed)
    best = None
    total = n_init * max_iter
    from ccli.threads import small_kernel_threads

    # Many short kernels per iteration: on a busy CPU, fewer threads than cores run them faster.
    with torch.inference_mode(), small_kernel_threads(dev):
        for run in range(n_init):
            centroids = _kmeans_pp(xt, x_sq, k, rng)
            labels = None
            for it in range(max_iter):
                new_labels, _ = _assign(xt, x_sq, centroids, rows)
                new_centroids = _update(xt, x_sq, new_labels, centroids, k, rows)
                shift = float(((new_centroids - centroids) ** 2).sum())
                unchanged = labels is not None and bool(torch.equal(new_labels, labels))
                centroids, labels = new_centroids, new_labels
                if progress is not None:
                    progress(run * max_iter + it + 1, total)
                if unchanged or shift <= tol_abs:
                    break
            if progress is not None:
                progress((run + 1) * max_iter, total)
            # Final E-step: labels consistent with the returned centres (as scikit-learn does).
            labels, inertia = _assign(xt, x_sq, centroids, rows)
            if best is None or inertia < best[2]:
                best = (labels, centroids, inertia)
    labels, centroids, inertia = best
    return labels.cpu().numpy().astype(np.int64), centroids.cpu().numpy().astype(np.float32), float(inertia)


def _assign(xt, x_sq, centroids, rows):
    """Nearest centre of every row and the summed squared distance (float64)."""
    import torch

    c_sq = (centroids * centroids).sum(1)
    labels = torch.empty(len(xt), dtype=torch.int64, device=xt.device)
    inertia = 0.0
    for start in range(0, len(xt), rows):
        block = xt[start : start + rows]
        dist = torch.addmm(c_sq[None, :], block, centroids.T, alpha=-2.0)  # ‖c‖² − 2x·c
        best, idx = dist.min(1)
        labels[start : start + rows] = idx
        inertia += float((best + x_sq[start : start + rows]).clamp_min_(0).double().sum())
    return labels, inertia


def _update(xt, x_sq, labels, old, k, rows):
    """Means of the assigned rows; an empty cluster takes the point farthest from its centre."""
    import torch

    # Per-block sums as a one-hot product in fp32 (a GEMM: casting all of x to float64 for an
    # index_add every iteration cost ~3× the rest of the iteration), accumulated across blocks
    # in float64.
    sums = torch.zeros((k, xt.shape[1]), dtype=torch.float64, device=xt.device)
    for start in range(0, len(xt), rows):
        block_labels = labels[start : start + rows]
        onehot = torch.zeros((k, len(block_labels)), dtype=xt.dtype, device=xt.device)
        onehot[block_labels, torch.arange(len(block_labels), device=xt.device)] = 1.0
        sums += (onehot @ xt[start : start + rows]).double()
    counts = torch.bincount(labels, minlength=k)
    empty = (counts == 0).nonzero(as_tuple=True)[0]
    centroids = (sums / counts.clamp_min(1)[:, None].double()).float()
    if len(empty):
        # Distances of every point to its own (old) centre; the farthest ones refill the empties.
        far = ((xt - old[labels]) ** 2).sum(1)
        pick = torch.topk(far, len(empty)).indices
        centroids[empty] = xt[pick]
    return centroids


def _kmeans_pp(xt, x_sq, k, rng):
    """Greedy k-means++ (Arthur & Vassilvitskii 2007; scikit-learn's 2 + ⌊ln k⌋ trials) on a seeded sample."""
    import torch

    n = len(xt)
    sample_size = min(n, max(_INIT_SAMPLE_MIN, _INIT_SAMPLE_PER_CENTRE * k))
    if sample_size < n:
        pick = np.sort(rng.choice(n, sample_size, replace=False))
        pick_t = torch.from_numpy(pick).to(xt.device)
        xs, xs_sq = xt[pick_t], x_sq[pick_t]
    else:
        xs, xs_sq = xt, x_sq
    m = len(xs)
    trials = 2 + int(math.log(k)) if k > 1 else 1
    centres = torch.empty((k, xt.shape[1]), dtype=xt.dtype, device=xt.device)
    first = int(rng.integers(m))
    centres[0] = xs[first]
    closest = (xs_sq - 2 * xs @ xs[first] + xs_sq[first]).clamp_min_(0).double()
    for c in range(1, k):
        potential = float(closest.sum())
        if potential <= 0:
            # Every point already sits on a centre (duplicates): any remaining point will do.
            centres[c] = xs[int(rng.integers(m))]
            continue
        cumulative = torch.cumsum(closest, 0).cpu().numpy()
        draws = rng.random(trials) * potential
        cand = np.minimum(np.searchsorted(cumulative, draws), m - 1)
        cand_t = torch.from_numpy(cand).to(xt.device)
        dist = (xs_sq[None, :] - 2 * xs[cand_t] @ xs.T + xs_sq[cand_t][:, None]).clamp_min_(0).double()
        dist = torch.minimum(dist, closest[None, :])
        best = int(dist.sum(1).argmin())
        centres[c] = xs[cand_t[best]]
        closest = dist[best]
    return centres


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def partition(xt, k: int, *, seed: int = 0, iters: int = 6, sample_per_centre: int = 64):
    """A coarse k-means partition of the torch rows `xt` (an index, not a clustering): labels [N], centres [k, D].

    Lloyd iterations start from k distinct random rows and run on a seeded sample of
    `sample_per_centre` rows per centre, then every row is assigned once. The exact kNN's
    cluster bounds (ccli.neighbors.knn_pruned) need only a partition whose lists are tight, not
    the best inertia: k-means++ seeding costs k sequential passes (minutes for k ≈ 1,000 on a
    CPU), a sample's Lloyd steps a fraction of a second.
    """
    import torch

    n = len(xt)
    k = int(max(1, min(k, n)))
    rng = np.random.default_rng(seed)
    size = min(n, max(k, sample_per_centre * k))
    sample = xt[torch.from_numpy(np.sort(rng.choice(n, size, replace=False))).to(xt.device)] if size < n else xt
    s_sq = (sample * sample).sum(1)
    centres = sample[torch.from_numpy(rng.choice(len(sample), k, replace=False)).to(xt.device)].clone()
    rows = int(max(1, min(n, _BLOCK_BYTES // (4 * k))))
    for _ in range(iters):
        labels, _ = _assign(sample, s_sq, centres, rows)
        centres = _update(sample, s_sq, labels, centres, k, rows)
    labels, _ = _assign(xt, (xt * xt).sum(1), centres, rows)
    return labels, centres
