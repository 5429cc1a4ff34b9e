"""Benchmark: neighbour purity of scan+'s multi-view cascade against plain kNN, step by step (issue 10).

One pretraining checkpoint is embedded (through the cache, `ccli embed --views
clean,weak,strong --draws T`, both layers), and every variant of the 4q → 2q → q cascade
(scanplus.md §5) is computed on those features with the library's own building blocks
(ccli.neighbors.multiview: `rerank`, `strong_rerank`, `filter_scores`, `keep_best`, the
k-means and SCAN warm-up filter heads). Nothing here feeds labels back into mining: labels
only score the result (purity = fraction of an anchor's neighbours sharing its label), except
in the rows marked "oracle", which bound what a step could do.

    python benchmarks/bench_cascade_purity.py --checkpoint CK.pt [--data digits] [--draws 8] [--q 20]

Prints one markdown table per feature layer. On 1,797 digits every row takes well under a
second except the SCAN warm-up heads (a few seconds each).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def purity(idx: np.ndarray, labels: np.ndarray) -> float:
    from ccli.neighbors.purity import neighbor_purity

    return float(neighbor_purity(idx, labels))


def unit(x: np.ndarray) -> np.ndarray:
    from ccli.neighbors.knn import prepare

    return prepare(np.asarray(x, dtype=np.float32), "cosine", copy=True)


def clean_knn(x: np.ndarray, k: int) -> np.ndarray:
    """The production step 1: exact cosine top-k, self excluded (ccli.neighbors.knn)."""
    from ccli.neighbors.knn import SearchParams, knn, resolve_backend

    idx, _ = knn(x, SearchParams(k=k, backend=resolve_backend("auto", "flat", "cpu")), copy=True)
    return idx


def load_views(path: Path):
    from ccli.neighbors.features import find_views, read_labels, read_matrix
    from ccli.store import open_artifact

    with open_artifact(path, "features") as art:
        clean = unit(read_matrix(art, "features"))
        weak = [unit(read_matrix(art, n)) for n in find_views(art, "weak")]
        strong = [unit(read_matrix(art, n)) for n in find_views(art, "strong")]
        labels = read_labels(art)
    return clean, weak, strong, labels


def mean_unit(tables: list[np.ndarray]) -> np.ndarray:
    """Average the (unit) embeddings of several draws, then re-normalise (one averaged view)."""
    return unit(np.mean(np.stack(tables), axis=0))


def oracle_keep(cand: np.ndarray, labels: np.ndarray, keep: int) -> np.ndarray:
    """Upper bound of a step: same-label candidates first (previous order kept within each group)."""
    from ccli.neighbors.multiview import keep_best

    same = (labels[cand] == labels[:, None]).astype(np.float32)
    return keep_best(cand, same, keep)[0]


def head_probs(kind: str, clean, weak_table, keep_idx, clusters: int, seed: int, **head):
    from ccli.neighbors.multiview import CascadeParams, head_probabilities, kmeans_probabilities, train_scan_head

    if kind == "kmeans":
        return kmeans_probabilities(clean, weak_table, clusters, 0.1, seed)
    params = CascadeParams(q=keep_idx.shape[1], clusters=clusters, seed=seed, **head)
    net = train_scan_head(clean, keep_idx, params)
    return head_probabilities(net, weak_table)


def cluster_acc(probs: np.ndarray, labels: np.ndarray) -> float:
    from ccli.metrics.clustering import contingency, hungarian_accuracy

    return float(hungarian_accuracy(contingency(labels, probs.argmax(1)))[0])


def study(path: Path, q: int, seed: int, layer: str) -> list[tuple[str, str, float]]:
    """Rows (variant, steps 'purity@size → …', final purity) for one features artifact."""
    from ccli.neighbors.multiview import filter_scores, keep_best, rerank, strong_rerank

    clean, weak, strong, labels = load_views(path)
    clusters = int(len(np.unique(labels)))
    rows: list[tuple[str, str, float]] = []

    def row(name: str, steps: list[np.ndarray]) -> None:
        text = " → ".join(f"{purity(s, labels):.3f}@{s.shape[1]}" for s in steps)
        rows.append((name, text, purity(steps[-1], labels)))

    pool = {m: clean_knn(clean, m * q) for m in (1, 2, 3, 4, 8)}
    plain = pool[1]
    row("plain kNN@q (clean view; scan's neighbours)", [plain])
    for name, table in (("weak draw 0", weak[0]), (f"weak mean of {len(weak)} draws", mean_unit(weak)),
                        ("strong draw 0", strong[0]), (f"strong mean of {len(strong)} draws", mean_unit(strong))):
        row(f"kNN@q of the {name} alone", [clean_knn(table, q)])
    row("clean pool 4q, first 2q kept (no strong step)", [pool[4], pool[2]])

    # Step 2 alone: which table re-ranks the 4q clean pool into 2q.
    four, keep2 = pool[4], 2 * q
    step2 = {
        "strong d0, both (production default)": strong_rerank(four, clean, strong[:1], keep2, "cosine", "both")[0],
        "strong d0, anchor_only": strong_rerank(four, clean, strong[:1], keep2, "cosine", "anchor_only")[0],
        f"strong similarity averaged over {len(strong)} draws, both": strong_rerank(four, clean, strong, keep2, "cosine", "both")[0],
        f"strong similarity averaged over {len(strong)} draws, anchor_only (scan+ digits preset uses 4)":
            strong_rerank(four, clean, strong, keep2, "cosine", "anchor_only")[0],
        f"strong embedding averaged over {len(strong)} draws, both": rerank(four, mean_unit(strong), mean_unit(strong), keep2)[0],
        f"strong embedding averaged over {len(strong)} draws, anchor_only": rerank(four, mean_unit(strong), clean, keep2)[0],
        "weak d0, both": rerank(four, weak[0], weak[0], keep2)[0],
        f"weak embedding averaged over {len(weak)} draws, both": rerank(four, mean_unit(weak), mean_unit(weak), keep2)[0],
        "clean + strong-mean similarity, summed (fusion; not the spec)":
            rerank(four, np.hstack([clean, mean_unit(strong)]) / np.sqrt(2), np.hstack([clean, mean_unit(strong)]) / np.sqrt(2), keep2)[0],
        "oracle (true labels)": oracle_keep(four, labels, keep2),
    }
    for name, idx in step2.items():
        row(f"step 2 only: 4q → 2q by {name}", [four, idx])

    # Step 3: the filter head on the weak view, from the production step 2 and from clean top-2q.
    weak_mean = mean_unit(weak)
    heads = {
        "kmeans (scan+ digits preset)": ("kmeans", {}),
        "scan_warmup, spec defaults (Adam 1e-4, 30 ep, batch 512)": ("scan_warmup", {}),
        "scan_warmup, Adam 1e-3, 200 ep, batch 256": ("scan_warmup", {"head_lr": 1e-3, "head_epochs": 200, "head_batch": 256}),
    }
    starts = {"production step 2": step2["strong d0, both (production default)"],
              "preset step 2 (strong 4-draw mean, anchor_only)": step2[next(k for k in step2 if "anchor_only (scan+" in k)],
              "clean top-2q": pool[2]}
    for start_name, start in starts.items():
        for head_name, (kind, head) in heads.items():
            for weak_name, table in (("weak d0", weak[0]), (f"weak mean of {len(weak)}", weak_mean), ("clean", clean)):
                if weak_name == "clean" and start_name != "clean top-2q":
                    continue
                probs = head_probs(kind, clean, table, start, clusters, seed, **head)
                acc = cluster_acc(probs, labels)
                for score in ("dot", "anchor_class", "confidence"):
                    if score != "dot" and not (kind == "kmeans" and weak_name == "weak d0"):
                        continue
                    final = keep_best(start, filter_scores(start, probs, score), q)[0]
                    row(f"{start_name} → q by {head_name} on {weak_name}, {score} (head ACC {acc:.3f})",
                        [four, start, final])
        row(f"{start_name} → q by oracle", [start, oracle_keep(start, labels, q)])

    # Pool sizes: mult1·q → mult2·q → q with the production step 2 (strong d0, both) and a k-means head.
    probs_km = head_probs("kmeans", clean, weak[0], None, clusters, seed)
    for m1, m2 in ((8, 4), (4, 2), (3, 2), (2, 2), (2, 1), (4, 4), (4, 1)):
        cand = pool[m1]
        s2 = strong_rerank(cand, clean, strong[:1], m2 * q, "cosine", "both")[0]
        final = keep_best(s2, filter_scores(s2, probs_km, "dot"), q)[0]
        row(f"pool {m1 * q} → {m2 * q} → {q} (strong d0 both, kmeans head on weak d0, dot)", [cand, s2, final])

    # Votes across views (the spec says cascade, not vote: these are comparisons only).
    cand = pool[4]
    votes = np.zeros(cand.shape, dtype=np.float32)
    for table in (clean, weak[0], strong[0]):
        sims = np.einsum("nd,nmd->nm", table, table[cand])
        rank = np.argsort(np.argsort(-sims, axis=1, kind="stable"), axis=1)
        votes += (rank < q).astype(np.float32)
    row("vote: 4q pool, candidates ranked by #views (clean, weak, strong) listing them in their top q", [cand, keep_best(cand, votes, q)[0]])
    inter = np.zeros(cand.shape, dtype=np.float32)
    for table in (clean, weak[0], strong[0]):
        sims = np.einsum("nd,nmd->nm", table, table[cand])
        inter -= np.argsort(np.argsort(-sims, axis=1, kind="stable"), axis=1)
    row("rank sum over clean, weak, strong views (4q pool)", [cand, keep_best(cand, inter, q)[0]])
    print(f"  [{layer}] {len(rows)} rows", file=sys.stderr)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", default="digits")
    ap.add_argument("--draws", type=int, default=8)
    ap.add_argument("--q", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layers", default="backbone,projector")
    ap.add_argument("--cache-dir", default=os.environ.get("CCLI_CACHE"))
    args = ap.parse_args()

    from ccli.methods.pretrain import embed

    started = time.perf_counter()
    load = os.getloadavg()
    print(f"{args.data}, checkpoint {Path(args.checkpoint).name}, q={args.q}, {args.draws} draws per augmented view; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; {dt.date.today()}; "
          f"load average {load[0]:.1f}; nice {os.nice(0)}")
    for layer in args.layers.split(","):
        path, _ = embed(args.checkpoint, args.data, layer=layer, views="clean,weak,strong", draws=args.draws,
                        device="cpu", cache_dir=args.cache_dir)
        rows = study(Path(path), args.q, args.seed, layer)
        plain = rows[0][2]
        print(f"\n### layer: {layer}\n")
        print("| variant | steps (purity@size) | final | final − plain |")
        print("|---|---|---:|---:|")
        for name, steps, final in rows:
            print(f"| {name} | {steps} | {final:.3f} | {final - plain:+.3f} |")
    print(f"\n{time.perf_counter() - started:.0f} s; load average after {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
