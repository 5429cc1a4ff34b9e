"""Benchmark: the exact torch kNN on a CPU, plain blocked search vs cluster-bound pruning (issue 17).

Each (N, mode) runs in its own subprocess (peak RSS its own), on the same data: the Gaussian
mixture of `bench_neighbors.make_data` (unit rows around C centres, noise 0.5 per coordinate
around N(0, 1) centres, D = 128). The pruned run's ids and scores are compared with the plain
run's where both ran; the pruned run also reports the fraction of the N² scores it computed,
the blocks whose filter went to fp32 (near-ties within bf16's 2ε), the rows redone, and
whether 'auto' gave up.

    python benchmarks/bench_knn_pruned.py --n 50000,100000,200000 --centres 100
    python benchmarks/bench_knn_pruned.py --n 50000 --modes off,auto --centres 1000

A plain run can be left out at a size (`--plain-max N`): on data whose near-ties make the
plain path redo every row in fp32 over all N columns it takes hours at 200k on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def run_one(n: int, d: int, k: int, centres: int, mode: str, out: Path) -> dict:
    import resource

    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_neighbors import make_data

    from ccli.neighbors import knn_pruned
    from ccli.neighbors.knn import knn
    from ccli.neighbors.params import SearchParams

    x = make_data(n, d, centres=centres)
    stats: dict = {}
    inner = knn_pruned.search_pruned

    def counted(*args, **kwargs):
        return inner(*args, **{**kwargs, "stats": stats})

    knn_pruned.search_pruned = counted
    started = time.perf_counter()
    idx, scores = knn(x, SearchParams(k=k, backend="torch", prune=mode), copy=False)
    seconds = time.perf_counter() - started
    np.save(out / f"{n}-{mode}.idx.npy", idx)
    np.save(out / f"{n}-{mode}.val.npy", scores)
    return {"n": n, "mode": mode, "seconds": seconds, "stats": stats,
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", default="50000,100000,200000")
    parser.add_argument("--d", type=int, default=128)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--centres", type=int, default=100)
    parser.add_argument("--modes", default="off,auto")
    parser.add_argument("--plain-max", type=int, default=0, help="run 'off' only up to this N (0 = always)")
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        n, mode = args.run.split(":")
        print(json.dumps(run_one(int(n), args.d, args.k, args.centres, mode, args.workdir)))
        return

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-knn-pruned-") as tmp:
        for n in (int(s) for s in args.n.split(",")):
            for mode in args.modes.split(","):
                if mode == "off" and args.plain_max and n > args.plain_max:
                    continue
                load = os.getloadavg()[0]
                proc = subprocess.run(
                    [sys.executable, __file__, "--run", f"{n}:{mode}", "--workdir", tmp, "--d", str(args.d),
                     "--k", str(args.k), "--centres", str(args.centres)],
                    capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
                if proc.returncode:
                    raise SystemExit(f"N={n} prune={mode} failed:\n{proc.stderr}")
                row = json.loads(proc.stdout.strip().splitlines()[-1])
                row["load"] = [load, os.getloadavg()[0]]
                plain = Path(tmp) / f"{n}-off.idx.npy"
                if mode != "off" and plain.exists():
                    row["same_ids"] = bool(np.array_equal(np.load(plain), np.load(Path(tmp) / f"{n}-{mode}.idx.npy")))
                    row["same_scores"] = bool(np.array_equal(np.load(Path(tmp) / f"{n}-off.val.npy"),
                                                             np.load(Path(tmp) / f"{n}-{mode}.val.npy")))
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    if args.json_out:
        args.json_out.write_text(json.dumps({"centres": args.centres, "d": args.d, "k": args.k, "rows": rows}, indent=2))
    print(table(rows))


def table(rows: list[dict]) -> str:
    lines = ["| N | prune | seconds | scored fraction of N² | fp32 blocks / blocks | rows redone | same ids / scores as off | peak RSS (MB) | load |",
             "|---:|---|---:|---:|---:|---:|---|---:|---|"]
    for r in rows:
        s = r["stats"]
        frac = f"{s['scored_fraction']:.3f}" + (" (gave up)" if s.get("gave_up") else "") if s else "–"
        blocks = f"{s.get('fp32_blocks', 0)} / {s['blocks']}" if s and "blocks" in s else "–"
        same = f"{r['same_ids']} / {r['same_scores']}" if "same_ids" in r else "–"
        lines.append(f"| {r['n']:,} | {r['mode']} | {r['seconds']:.1f} | {frac} | {blocks} | "
                     f"{s.get('redone', '–') if s else '–'} | {same} | {r['max_rss_mb']:.0f} | "
                     f"{r['load'][0]:.1f} → {r['load'][1]:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
