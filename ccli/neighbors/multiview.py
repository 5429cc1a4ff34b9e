"""Multi-view semantic neighbour mining (scan+ stage 2, scanplus.md §5): the 4q → 2q → q cascade.

1. clean view: top `mult1·q` neighbours by the clean features (a full kNN search);
2. strong view: re-rank those candidates by similarity of the strongly augmented features
   and keep `mult2·q`;
3. weak view: score each remaining candidate by agreement of cluster probabilities on the
   weakly augmented features (a filter head) and keep the best q.

Steps 2 and 3 only re-order each row's own candidates (a gather + a small matmul per row
block); they never search the dataset again (scanplus.md §5.4).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ccli.errors import BadInput

FILTER_HEADS = ("scan_warmup", "kmeans")
FILTER_SCORES = ("dot", "anchor_class", "confidence")
STRONG_MODES = ("both", "anchor_only")

# Temporary gathered candidate features per block (rows × candidates × D float32).
_GATHER_BLOCK_BYTES = 128 * 2**20


@dataclass(frozen=True)
class CascadeParams:
    q: int
    clusters: int
    mult1: int = 4
    mult2: int = 2
    metric: str = "cosine"
    strong_mode: str = "both"
    filter_head: str = "scan_warmup"
    filter_score: str = "dot"
    kmeans_temperature: float = 0.1
    head_hidden: int = 512
    head_epochs: int = 30
    head_lr: float = 1e-4
    head_batch: int = 512
    head_entropy_weight: float = 5.0
    seed: int = 0
    device: str = "cpu"


def check_cascade(params: CascadeParams, n: int, source: str) -> None:
    """Refuse settings the cascade cannot honour, before any work is done."""
    if params.mult1 < params.mult2 or params.mult2 < 1:
        raise BadInput(f"the cascade needs mult1 ≥ mult2 ≥ 1 (got mult1={params.mult1}, mult2={params.mult2}).")
    if params.mult1 * params.q >= n:
        raise BadInput(
            f"--multi-view searches mult1·k = {params.mult1 * params.q} candidates, "
            f"which is not smaller than the number of points in {source} (N={n}); lower -k."
        )
    if params.clusters < 2:
        raise BadInput(f"--clusters {params.clusters} must be at least 2 for the filter head.")
    if params.filter_head not in FILTER_HEADS:
        raise BadInput(f"--filter-head {params.filter_head} is not one of {', '.join(FILTER_HEADS)}.")
    if params.filter_score not in FILTER_SCORES:
        raise BadInput(f"--filter-score {params.filter_score} is not one of {', '.join(FILTER_SCORES)}.")
    if params.strong_mode not in STRONG_MODES:
        raise BadInput(f"--strong-mode {params.strong_mode} is not one of {', '.join(STRONG_MODES)}.")


def _block_rows(m: int, d: int) -> int:
    return int(max(1, _GATHER_BLOCK_BYTES // (4 * max(1, m) * max(1, d))))


def keep_best(candidates: np.ndarray, scores: np.ndarray, keep: int) -> tuple[np.ndarray, np.ndarray]:
    """Top `keep` of each row by descending score; a stable sort keeps the previous order on ties."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :keep]
    return np.take_along_axis(candidates, order, axis=1), np.take_along_axis(scores, order, axis=1)


def pair_similarity(anchors: np.ndarray, gathered: np.ndarray, metric: str) -> np.ndarray:
    """Similarity of each anchor [b,D] to its own candidates [b,m,D] (higher = closer).

    For 'l2' this is the negated Euclidean distance, so one descending sort serves both.
    """
    if metric == "cosine":
        return np.einsum("bd,bmd->bm", anchors, gathered)
    diff = gathered - anchors[:, None, :]
    return -np.sqrt(np.einsum("bmd,bmd->bm", diff, diff))


def rerank(
    candidates: np.ndarray,
    anchor_table: np.ndarray,
    candidate_table: np.ndarray,
    keep: int,
    metric: str = "cosine",
) -> tuple[np.ndarray, np.ndarray]:
    """Re-rank each row i's candidates J by sim(anchor_table[i], candidate_table[J]) and keep the best.

    Tables must already be prepared for the metric (unit rows for cosine). Returns
    (indices, similarities), similarities descending (negated distances for 'l2').
    """
    n, m = candidates.shape
    out_idx = np.empty((n, keep), dtype=candidates.dtype)
    out_sim = np.empty((n, keep), dtype=np.float32)
    rows = _block_rows(m, candidate_table.shape[1])
    for start in range(0, n, rows):
        cand = candidates[start : start + rows]
        anchors = np.asarray(anchor_table[start : start + len(cand)], dtype=np.float32)
        gathered = np.asarray(candidate_table[cand], dtype=np.float32)
        sim = pair_similarity(anchors, gathered, metric).astype(np.float32)
        out_idx[start : start + len(cand)], out_sim[start : start + len(cand)] = keep_best(cand, sim, keep)
    return out_idx, out_sim


def filter_scores(candidates: np.ndarray, probs: np.ndarray, mode: str = "dot") -> np.ndarray:
    """Per-(anchor, candidate) agreement of cluster probabilities P [N,C] (scanplus.md §5.3.7).

    dot: ⟨p_i, p_j⟩; anchor_class: p_j[argmax p_i]; confidence: max_c p_j.
    """
    n, m = candidates.shape
    out = np.empty((n, m), dtype=np.float32)
    rows = _block_rows(m, probs.shape[1])
    for start in range(0, n, rows):
        cand = candidates[start : start + rows]
        p_anchor = probs[start : start + len(cand)]
        p_cand = probs[cand]
        if mode == "dot":
            out[start : start + len(cand)] = np.einsum("bc,bmc->bm", p_anchor, p_cand)
        elif mode == "anchor_class":
            cls = p_anchor.argmax(1)
            out[start : start + len(cand)] = np.take_along_axis(p_cand, cls[:, None, None], axis=2)[..., 0]
        elif mode == "confidence":
            out[start : start + len(cand)] = p_cand.max(2)
        else:
            raise BadInput(f"--filter-score {mode} is not one of {', '.join(FILTER_SCORES)}.")
    return out


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(1, keepdims=True)
    return z


# -- filter heads ------------------------------------------------------------------------
def kmeans_probabilities(clean: np.ndarray, weak: np.ndarray, clusters: int, temperature: float, seed: int) -> np.ndarray:
    """`--filter-head kmeans`: spherical k-means on clean features, p = softmax(cos(weak, μ)/T)."""
    import faiss

    km = faiss.Kmeans(clean.shape[1], clusters, niter=25, seed=seed, spherical=True, verbose=False)
    km.train(np.ascontiguousarray(clean, dtype=np.float32))
    centroids = km.centroids / np.maximum(np.linalg.norm(km.centroids, axis=1, keepdims=True), 1e-12)
    return _blocked_softmax(weak, lambda block: block @ centroids.T / temperature)


def _blocked_softmax(x: np.ndarray, logits_of) -> np.ndarray:
    out = None
    rows = 65536
    for start in range(0, len(x), rows):
        probs = softmax(np.asarray(logits_of(np.asarray(x[start : start + rows], dtype=np.float32)), dtype=np.float32))
        if out is None:
            out = np.empty((len(x), probs.shape[1]), dtype=np.float32)
        out[start : start + len(probs)] = probs
    return out


def build_head(dim: int, hidden: int, clusters: int):
    """Φ_c: Linear → BN → ReLU → Linear(C) (scanplus.md §5.3.6; no projector weights to start from here)."""
    import torch.nn as nn

    return nn.Sequential(nn.Linear(dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, clusters))


def train_scan_head(clean: np.ndarray, neighbors: np.ndarray, params: CascadeParams):
    """`--filter-head scan_warmup`: train Φ_c with the SCAN loss on cached clean features and N_2q."""
    from ccli.neighbors.knn_torch import torch_device
    from ccli.threads import small_kernel_threads

    device = torch_device(params.device)
    with small_kernel_threads(device):
        return _train_scan_head(clean, neighbors, params, device)


def _train_scan_head(clean: np.ndarray, neighbors: np.ndarray, params: CascadeParams, device):
    import torch

    from ccli.losses.scan import scan_loss

    generator = torch.Generator().manual_seed(params.seed)
    torch.manual_seed(params.seed)
    head = build_head(clean.shape[1], params.head_hidden, params.clusters).to(device)
    optimiser = torch.optim.Adam(head.parameters(), lr=params.head_lr)
    feats = torch.from_numpy(np.ascontiguousarray(clean, dtype=np.float32))
    nbrs = torch.from_numpy(np.ascontiguousarray(neighbors, dtype=np.int64))
    n = len(feats)
    batch = min(params.head_batch, n)
    head.train()
    for _ in range(params.head_epochs):
        perm = torch.randperm(n, generator=generator)
        # Drop a last batch of one: BatchNorm cannot normalise a single row.
        for start in range(0, n - (1 if n % batch == 1 else 0), batch):
            idx = perm[start : start + batch]
            pick = torch.randint(0, nbrs.shape[1], (len(idx),), generator=generator)
            neighbor_idx = nbrs[idx, pick]
            # One forward for anchors and neighbours: BN sees one batch, as in SCAN.
            logits = head(torch.cat([feats[idx], feats[neighbor_idx]]).to(device))
            loss = scan_loss(logits[: len(idx)], logits[len(idx) :], params.head_entropy_weight)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
    head.eval()
    return head


def head_probabilities(head, x: np.ndarray, device: str = "cpu") -> np.ndarray:
    import torch

    from ccli.neighbors.knn_torch import torch_device

    dev = torch_device(device)

    def logits(block):
        with torch.inference_mode():
            return head(torch.from_numpy(block).to(dev)).float().cpu().numpy()

    return _blocked_softmax(x, logits)


# -- the cascade -------------------------------------------------------------------------
@dataclass
class CascadeStep:
    name: str
    indices: np.ndarray
    scores: np.ndarray
    score_kind: str


def strong_rerank(
    clean_candidates: np.ndarray,
    clean_table: np.ndarray,
    strong_tables: list[np.ndarray],
    keep: int,
    metric: str,
    mode: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Step 2: re-rank by strong-view similarity, averaged over the given draws (scanplus.md §5.3.4)."""
    if len(strong_tables) == 1:
        cand_table = clean_table if mode == "anchor_only" else strong_tables[0]
        return rerank(clean_candidates, strong_tables[0], cand_table, keep, metric)
    n, m = clean_candidates.shape
    total = np.zeros((n, m), dtype=np.float32)
    for table in strong_tables:
        cand_table = clean_table if mode == "anchor_only" else table
        # keep=m returns every candidate re-ordered; undo the order to add per candidate.
        idx, sim = rerank(clean_candidates, table, cand_table, m, metric)
        total += _align(clean_candidates, idx, sim)
    return keep_best(clean_candidates, total / len(strong_tables), keep)


def _align(reference: np.ndarray, idx: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Values re-ordered so that column c belongs to reference[:, c] (rows hold the same ids)."""
    ref_order = np.argsort(reference, axis=1, kind="stable")
    idx_order = np.argsort(idx, axis=1, kind="stable")
    aligned = np.empty_like(values)
    rows = np.arange(len(reference))[:, None]
    aligned[rows, ref_order] = values[rows, idx_order]
    return aligned


def cascade(
    clean_candidates: np.ndarray,
    clean_scores: np.ndarray,
    clean_table: np.ndarray,
    strong_tables: list[np.ndarray],
    weak_table: np.ndarray,
    params: CascadeParams,
    log=lambda message: None,
) -> list[CascadeStep]:
    """Steps 2-3 on top of a step-1 search result; tables prepared for the metric.

    `clean_candidates` holds the mult1·q clean-view neighbours per row (self excluded).
    Returns the three steps, the last being the final q neighbours.
    """
    q = params.q
    step2_idx, step2_sim = strong_rerank(
        clean_candidates, clean_table, strong_tables, params.mult2 * q, params.metric, params.strong_mode
    )
    if params.filter_head == "kmeans":
        log(f"filter head: spherical k-means, C={params.clusters}")
        probs = kmeans_probabilities(clean_table, weak_table, params.clusters, params.kmeans_temperature, params.seed)
    else:
        log(f"filter head: SCAN warm-up on cached features, C={params.clusters}, {params.head_epochs} epochs")
        head = train_scan_head(clean_table, step2_idx, params)
        probs = head_probabilities(head, weak_table, params.device)
    scores = filter_scores(step2_idx, probs, params.filter_score)
    final_idx, final_scores = keep_best(step2_idx, scores, q)
    to_stored = _stored_scores(params.metric)
    return [
        CascadeStep("clean", clean_candidates, clean_scores, "cosine" if params.metric == "cosine" else "l2"),
        CascadeStep("strong", step2_idx, to_stored(step2_sim), "cosine" if params.metric == "cosine" else "l2"),
        CascadeStep("weak", final_idx, final_scores, f"filter_{params.filter_score}"),
    ]


def _stored_scores(metric: str):
    # Internally l2 similarities are negated distances; on disk they are distances again.
    return (lambda s: s) if metric == "cosine" else (lambda s: -s)
