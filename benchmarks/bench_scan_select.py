"""Benchmark: label-free head-selection rules of SCAN's multi-head step on frozen features (issue 10).

Trains H linear heads on stored features (`ccli embed`, the layer the heads read) with mined
neighbours (`ccli neighbors`), exactly the loss of the clustering stage with `head_only` and
`augment: none` (SCAN loss summed over heads, one neighbour from N_x ∪ {x} per anchor and epoch,
Adam, batch `--batch`, drop_last), for several head seeds, then scores every rule of
ccli.methods.scan_select on the same heads: the chosen head's (or the consensus's) ACC beside
the best and the mean head. Labels only score.

    python benchmarks/bench_scan_select.py --features F.h5 --neighbors NB.h5 [--heads 10]
        [--seeds 42,1,2] [--epochs 20] [--batch 512] [--lr 1e-2] [--subsets 10]

The heads are trained as one batched tensor [H, d, K] (each head initialised as torch's
nn.Linear): the same objective as the library's per-head loop, a few times faster.
Prints one JSON line per (seed, number of heads).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def train_heads(x, table, num_clusters, heads, lr, epochs, batch, entropy, seed):
    """H heads' (weight [H, d, K], bias [H, K]) after the SCAN step; the per-head loss is the library's."""
    import torch

    from ccli.losses.scan import batch_entropy, scan_consistency

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    linears = [torch.nn.Linear(x.shape[1], num_clusters) for _ in range(heads)]
    weight = torch.nn.Parameter(torch.stack([lin.weight.detach().T for lin in linears]))
    bias = torch.nn.Parameter(torch.stack([lin.bias.detach() for lin in linears]))
    opt = torch.optim.Adam([weight, bias], lr=lr)
    feats = torch.from_numpy(x)
    sample = np.concatenate([np.arange(len(table))[:, None], table], 1)
    n = len(x)
    for _ in range(epochs):
        order = rng.permutation(n)
        partner = sample[np.arange(n), rng.integers(0, sample.shape[1], n)]
        for begin in range(0, n - batch + 1, batch):
            i = order[begin:begin + batch]
            both = torch.cat([feats[i], feats[partner[i]]])
            probs = torch.softmax(torch.einsum("bd,hdk->hbk", both, weight) + bias[:, None, :], -1)
            total = 0.0
            for p in probs:
                total = total + scan_consistency(p[:batch], p[batch:]) - entropy * batch_entropy(p[:batch])
            opt.zero_grad()
            total.backward()
            opt.step()
    return weight.detach(), bias.detach()


def score_rules(probs, table, labels, entropy):
    import torch

    from ccli.losses.scan import scan_loss_over_table
    from ccli.metrics.clustering import clustering_scores
    from ccli.methods.scan_select import consensus, medoid

    index = torch.from_numpy(table)
    assign = [p.argmax(1).numpy() for p in probs]
    accs = np.array([clustering_scores(labels, a)["acc"] for a in assign])
    losses = np.array([float(scan_loss_over_table(p, index, entropy)) for p in probs])
    cons = np.array([float(scan_loss_over_table(p, index, 0.0)) for p in probs])
    mid = medoid(assign)
    chosen = {"loss": int(np.argmin(losses)), "consistency": int(np.argmin(cons)), "medoid": mid}
    out = {rule: round(float(accs[h]), 4) for rule, h in chosen.items()}
    out["consensus"] = round(float(clustering_scores(labels, consensus(probs, mid).argmax(1).numpy())["acc"]), 4)
    # medoid among the better half by loss: both signals at once
    half = np.argsort(losses)[: max(3, len(probs) // 2)]
    out["medoid_of_best_half"] = round(float(accs[half[medoid([assign[h] for h in half])]]), 4)
    out.update(best=round(float(accs.max()), 4), mean=round(float(accs.mean()), 4), worst=round(float(accs.min()), 4),
               heads_acc=[round(float(a), 4) for a in accs], chosen=chosen)
    return out


def main() -> None:
    from bench_scan_heads import load

    ap = argparse.ArgumentParser()
    ap.add_argument("--features", type=Path, required=True)
    ap.add_argument("--neighbors", type=Path, required=True)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--heads", type=int, default=10)
    ap.add_argument("--subsets", default="", help="also score the first n heads, e.g. 10 (comma list)")
    ap.add_argument("--seeds", default="42")
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--entropy", type=float, default=5.0)
    ap.add_argument("--clusters", type=int, default=10)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    x, labels, table = load(args.features, args.neighbors, args.k)
    feats = torch.from_numpy(x)
    sizes = sorted({args.heads, *(int(s) for s in args.subsets.split(",") if s)})
    for seed in (int(s) for s in args.seeds.split(",")):
        started = time.perf_counter()
        weight, bias = train_heads(x, table, args.clusters, args.heads, args.lr, args.epochs, args.batch,
                                   args.entropy, seed)
        train_s = time.perf_counter() - started
        with torch.no_grad():
            probs = list(torch.softmax(torch.einsum("nd,hdk->hnk", feats, weight) + bias[:, None, :], -1))
        for size in sizes:
            out = {"seed": seed, "heads": size, "epochs": args.epochs, "lr": args.lr, "train_s": round(train_s, 1)}
            out.update(score_rules(probs[:size], table, labels, args.entropy))
            print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
