"""Benchmark: the exact torch kNN on a CPU, side by side (issue 17): pruned vs plain vs an older
revision vs scikit-learn brute force, on the same data, each contender its own process.

Data: the Gaussian mixture of `bench_neighbors.make_data` (unit rows around C centres, noise 0.5
per coordinate around N(0, 1) centres, D = 128), written once to a .npy that every contender
loads. Contenders (`--contenders`, in this order for every thread count):

- new:     this checkout, `prune=auto` (ccli.neighbors.knn.knn, the path `ccli neighbors
           --backend torch` takes);
- old:     the same call on the revision `--old-rev` (exported with `git archive` to a temporary
           directory: the baseline commit's code, not this one's);
- off:     this checkout, `prune=off` (the plain blocked search);
- sklearn: `NearestNeighbors(n_neighbors=k + 1, algorithm='brute')` (euclidean on unit rows: the
           cosine ranking), self dropped.

Each run reports wall seconds, user + system CPU seconds of its process, peak RSS, and the 1-minute
load average before and after it; the threads are set by OMP_NUM_THREADS / MKL_NUM_THREADS and
torch.set_num_threads in the child. Ids and scores of old/off are compared with new's
(`np.array_equal`), sklearn's ids by the share of rows with the same ids. Ratios are taken within
one thread count (same load, same data): sklearn / new and old / new.

    python benchmarks/bench_knn_pruned.py --n 200000 --centres 100 --threads 2 --contenders new,old,sklearn --old-rev 9d1f0a0
    python benchmarks/bench_knn_pruned.py --n 50000 --threads 2,1 --contenders new,old,off,sklearn --old-rev 9d1f0a0
    python benchmarks/bench_knn_pruned.py --n 200000 --centres 1000 --contenders new,off

`--plain-max N` leaves 'off' out above N (on near-tie data the plain path redoes every row in fp32
over all N columns: ~5 min at 200k on 2 quiet cores).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CONTENDERS = ("new", "old", "off", "sklearn")


def run_one(contender: str, workdir: Path, k: int, threads: int) -> dict:
    """Inside the child: one search on workdir/x.npy; ids and scores saved for the comparison."""
    import resource
    import time

    import torch

    torch.set_num_threads(threads)
    x = np.load(workdir / "x.npy")
    stats: dict = {}
    before = os.times()
    started = time.perf_counter()
    if contender == "sklearn":
        from sklearn.neighbors import NearestNeighbors

        nn = NearestNeighbors(n_neighbors=k + 1, algorithm="brute").fit(x)
        dist, ind = nn.kneighbors(x)
        is_self = ind == np.arange(len(ind))[:, None]
        order = np.argsort(is_self, axis=1, kind="stable")[:, :k]
        idx = np.take_along_axis(ind, order, axis=1)
        scores = 1 - np.take_along_axis(dist, order, axis=1) ** 2 / 2
    else:
        from ccli.neighbors import knn_pruned
        from ccli.neighbors.knn import knn
        from ccli.neighbors.params import SearchParams

        inner = knn_pruned.search_pruned

        def counted(*args, **kwargs):
            return inner(*args, **{**kwargs, "stats": stats})

        knn_pruned.search_pruned = counted
        idx, scores = knn(x, SearchParams(k=k, backend="torch", prune="off" if contender == "off" else "auto"),
                          copy=False)
    seconds = time.perf_counter() - started
    after = os.times()
    np.save(workdir / f"{contender}-{threads}.idx.npy", idx)
    np.save(workdir / f"{contender}-{threads}.val.npy", np.asarray(scores, dtype=np.float32))
    stats = {key: value for key, value in stats.items() if isinstance(value, (int, float, bool))}
    return {"contender": contender, "threads": threads, "seconds": seconds,
            "cpu_seconds": (after.user - before.user) + (after.system - before.system), "stats": stats,
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def export_rev(rev: str, into: Path) -> Path:
    """The ccli package of revision `rev` under `into` (git archive), for the 'old' contender; a
    directory holding a ccli package is used as it is."""
    if (Path(rev) / "ccli").is_dir():
        return Path(rev)
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "ccli"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", default="50000,200000", help="comma list of N")
    parser.add_argument("--d", type=int, default=128)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--centres", type=int, default=100)
    parser.add_argument("--threads", default="2", help="comma list of thread counts, e.g. 2,1")
    parser.add_argument("--contenders", default="new,sklearn", help=f"comma list of {', '.join(CONTENDERS)}")
    parser.add_argument("--old-rev", help="git revision for the 'old' contender (e.g. the commit before a change), or a directory holding its ccli/")
    parser.add_argument("--plain-max", type=int, default=0, help="run 'off' only up to this N (0 = always)")
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        contender, threads = args.run.split(":")
        print(json.dumps(run_one(contender, args.workdir, args.k, int(threads))))
        return
    contenders = [c for c in args.contenders.split(",") if c]
    unknown = set(contenders) - set(CONTENDERS)
    if unknown:
        parser.error(f"--contenders: unknown {sorted(unknown)}; choose from {', '.join(CONTENDERS)}")
    if "old" in contenders and not args.old_rev:
        parser.error("--contenders old needs --old-rev REV")

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_neighbors import make_data

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-knn-pruned-") as tmp:
        old_tree = export_rev(args.old_rev, Path(tmp) / "old") if "old" in contenders else None
        for n in (int(s) for s in args.n.split(",")):
            work = Path(tmp) / str(n)
            work.mkdir()
            np.save(work / "x.npy", make_data(n, args.d, centres=args.centres))
            for threads in (int(t) for t in args.threads.split(",")):
                for contender in contenders:
                    if contender == "off" and args.plain_max and n > args.plain_max:
                        continue
                    path = str(old_tree if contender == "old" else ROOT)
                    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": str(threads),
                           "MKL_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads)}
                    load = os.getloadavg()[0]
                    proc = subprocess.run([sys.executable, __file__, "--run", f"{contender}:{threads}", "--workdir",
                                           str(work), "--k", str(args.k)], capture_output=True, text=True, env=env)
                    if proc.returncode:
                        raise SystemExit(f"N={n} {contender} threads={threads} failed:\n{proc.stderr}")
                    row = json.loads(proc.stdout.strip().splitlines()[-1])
                    row.update(n=n, load=[load, os.getloadavg()[0]])
                    compare(row, work, threads)
                    rows.append(row)
                    print(json.dumps(row), file=sys.stderr, flush=True)
    if args.json_out:
        args.json_out.write_text(json.dumps({"centres": args.centres, "d": args.d, "k": args.k,
                                             "old_rev": args.old_rev, "rows": rows}, indent=2))
    print(table(rows))


def compare(row: dict, work: Path, threads: int) -> None:
    """Ids and scores against 'new' at the same thread count, when it ran first."""
    name = row["contender"]
    ref = work / f"new-{threads}.idx.npy"
    if name == "new" or not ref.exists():
        return
    ids = np.load(work / f"{name}-{threads}.idx.npy")
    new_ids = np.load(ref)
    if name == "sklearn":
        row["same_id_rows"] = float((ids == new_ids).all(1).mean())
        return
    row["same_ids"] = bool(np.array_equal(ids, new_ids))
    row["same_scores"] = bool(np.array_equal(np.load(work / f"{name}-{threads}.val.npy"),
                                             np.load(work / f"new-{threads}.val.npy")))


def table(rows: list[dict]) -> str:
    lines = ["| N | threads | contender | seconds | CPU s | ratio to new (seconds) | scored fraction of N² | "
             "rows redone / witness | same as new | peak RSS (MB) | load before → after |",
             "|---:|---:|---|---:|---:|---:|---:|---|---|---:|---|"]
    new = {(r["n"], r["threads"]): r["seconds"] for r in rows if r["contender"] == "new"}
    for r in rows:
        s = r["stats"]
        frac = (f"{s['scored_fraction']:.4f}" + (" (gave up)" if s.get("gave_up") else "")) if s else "–"
        redone = f"{s.get('redone', '–')} / {s.get('witness_rows', '–')}" if s else "–"
        if "same_ids" in r:
            same = f"ids {r['same_ids']}, scores {r['same_scores']}"
        elif "same_id_rows" in r:
            same = f"{100 * r['same_id_rows']:.2f}% of rows same ids"
        else:
            same = "–"
        base = new.get((r["n"], r["threads"]))
        ratio = f"{r['seconds'] / base:.2f}×" if base else "–"
        lines.append(f"| {r['n']:,} | {r['threads']} | {r['contender']} | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} | "
                     f"{ratio} | {frac} | {redone} | {same} | {r['max_rss_mb']:.0f} | "
                     f"{r['load'][0]:.1f} → {r['load'][1]:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
