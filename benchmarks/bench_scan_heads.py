"""Benchmark: SCAN's clustering step on frozen features, many settings in seconds (issue 10).

With `head_only: true` and `augment: none` the clustering stage of `ccli train --method
scan|scan+` is a function of the features its heads read (the checkpoint's backbone or
projector output on un-augmented images, in eval mode): this script trains the same heads on
those features, stored by `ccli embed`, so that the settings can be compared before one
`ccli train` run confirms the chosen one. It uses the library's loss functions
(ccli.losses.scan, ccli.losses.self_label) and its head selection (lowest SCAN loss over every
mined pair, ccli.methods.scan_heads). Labels only score the result.

    python benchmarks/bench_scan_heads.py --features F.h5 [--neighbors NB.h5 | --k 20]
        [--heads 10] [--lr 1e-2] [--epochs 50] [--batch 128] [--entropy 5] [--self-label-epochs 0]

Prints one JSON line per setting: ACC of the kept head, of every head, the kept head's loss,
neighbour purity, and the wall time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def load(features: Path, neighbors: Path | None, k: int):
    from ccli.neighbors.features import read_labels, read_matrix
    from ccli.store import open_artifact

    with open_artifact(features, "features") as art:
        x = np.asarray(read_matrix(art, "features"), dtype=np.float32)
        labels = np.asarray(read_labels(art))
    if neighbors is not None:
        with open_artifact(neighbors, "neighbors") as art:
            table = np.asarray(art.read("indices"))[:, :k]
    else:
        from ccli.neighbors.knn import SearchParams, knn, prepare, resolve_backend

        unit = prepare(x, "cosine", copy=True)
        table, _ = knn(unit, SearchParams(k=k, backend=resolve_backend("auto", "flat", "cpu")), copy=True)
    return x, labels, np.asarray(table, dtype=np.int64)


def train_heads(x, table, num_clusters, heads, lr, epochs, batch, entropy, seed, include_self=True):
    import torch

    from ccli.losses.scan import batch_entropy, scan_consistency

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    feats = torch.from_numpy(x)
    linears = torch.nn.ModuleList(torch.nn.Linear(x.shape[1], num_clusters) for _ in range(heads))
    opt = torch.optim.Adam(linears.parameters(), lr=lr)
    sample = np.concatenate([np.arange(len(table))[:, None], table], 1) if include_self else table
    n = len(x)
    for _ in range(epochs):
        order = rng.permutation(n)
        partner = sample[np.arange(n), rng.integers(0, sample.shape[1], n)]
        for begin in range(0, n - batch + 1, batch):
            i = order[begin:begin + batch]
            a, p = feats[i], feats[partner[i]]
            total = 0.0
            for lin in linears:
                pa, pn = torch.softmax(lin(a), 1), torch.softmax(lin(p), 1)
                total = total + scan_consistency(pa, pn) - entropy * batch_entropy(pa)
            opt.zero_grad()
            total.backward()
            opt.step()
    return linears


def select(linears, x, table, entropy):
    import torch

    from ccli.methods.scan_heads import head_losses, select_head

    feats = torch.from_numpy(x)
    with torch.no_grad():
        probs = [torch.softmax(lin(feats), 1) for lin in linears]
    losses = head_losses(probs, table, entropy)
    return probs, losses, select_head(losses)


def self_label(lin, x, probs, epochs, threshold, lr, batch, seed):
    """SCAN's step 3 on frozen features (no augmentation: weak = strong = the feature)."""
    import torch

    from ccli.losses.self_label import self_label_loss

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    feats = torch.from_numpy(x)
    opt = torch.optim.Adam(lin.parameters(), lr=lr)
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for begin in range(0, len(x) - batch + 1, batch):
            i = order[begin:begin + batch]
            logits = lin(feats[i])
            loss, _ = self_label_loss(logits.detach(), logits, threshold, True)
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        return torch.softmax(lin(feats), 1)


def main() -> None:
    from ccli.metrics.clustering import clustering_scores as cluster_scores
    from ccli.neighbors.purity import neighbor_purity

    ap = argparse.ArgumentParser()
    ap.add_argument("--features", type=Path, required=True)
    ap.add_argument("--neighbors", type=Path)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--heads", type=int, default=10)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--entropy", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--clusters", type=int, default=10)
    ap.add_argument("--self-label-epochs", type=int, default=0)
    ap.add_argument("--threshold", type=float, default=0.99)
    ap.add_argument("--self-label-lr", type=float, default=1e-4)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    x, labels, table = load(args.features, args.neighbors, args.k)
    started = time.perf_counter()
    linears = train_heads(x, table, args.clusters, args.heads, args.lr, args.epochs, args.batch, args.entropy, args.seed)
    probs, losses, best = select(linears, x, table, args.entropy)
    accs = [float(cluster_scores(labels, p.argmax(1).numpy())["acc"]) for p in probs]
    out = {"setting": vars(args) | {"features": str(args.features), "neighbors": str(args.neighbors)},
           "purity": float(neighbor_purity(table, labels)), "kept": best, "acc": accs[best],
           "acc_heads": [round(a, 4) for a in accs], "loss_kept": losses[best]}
    if args.self_label_epochs:
        p = self_label(linears[best], x, probs[best], args.self_label_epochs, args.threshold, args.self_label_lr,
                       1000 if len(x) >= 1000 else len(x), args.seed)
        out["acc_self_label"] = float(cluster_scores(labels, p.argmax(1).numpy())["acc"])
    out["wall_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
