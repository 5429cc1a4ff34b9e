"""Before/after a refactor of the training path: same predictions, same step time, side by side.

Runs `ccli train` from two checkouts (the current tree and `--before DIR`, e.g. a `git worktree`
of the commit before the change) on the same data, preset and seed, alternating old and new so
that machine load hits both alike, and reports

- whether the predictions (labels and probabilities) are bit-identical, per method;
- the per-epoch wall time (median of `epoch_time_s` in metrics.jsonl) of each checkout, and the ratio.

    git worktree add --detach /tmp/before <old-commit>
    python benchmarks/bench_port.py --before /tmp/before --methods cc,dcacn --epochs 20 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

HERE = Path(__file__).resolve().parent.parent


def train(tree: Path, method: str, data: str, preset: str, epochs: int, seed: int, out: Path, extra: list[str]):
    env = {**os.environ, "PYTHONPATH": str(tree), "CCLI_CACHE": str(out.parent / "cache")}
    cmd = [sys.executable, "-m", "ccli", "train", "--method", method, "--data", data, "--preset", preset,
           "--epochs", str(epochs), "--seed", str(seed), "-o", str(out), "-q", *extra]
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{tree}: {' '.join(cmd)} failed:\n{proc.stderr}")
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    epoch_times = [r["epoch_time_s"] for r in lines if "epoch_time_s" in r]
    with h5py.File(out / "predictions.h5") as f:
        labels, probs = f["labels"][:], f["probs"][:]
    return {"labels": labels, "probs": probs, "epoch_s": statistics.median(epoch_times), "wall_s": wall,
            "acc": lines[-1].get("acc")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="checkout of the code before the change")
    parser.add_argument("--methods", default="cc,dcacn")
    parser.add_argument("--data", default="digits")
    parser.add_argument("--preset", default="digits")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--rounds", type=int, default=2, help="old/new pairs per method (timing)")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods.split(","):
            runs = {"before": [], "after": []}
            for r in range(args.rounds):
                order = [("before", args.before), ("after", HERE)] if r % 2 == 0 else [("after", HERE),
                                                                                      ("before", args.before)]
                for name, tree in order:
                    out = Path(tmp) / f"{method}-{name}-{r}"
                    runs[name].append(train(tree, method, args.data, args.preset, args.epochs, args.seed, out, []))
            old, new = runs["before"][0], runs["after"][0]
            identical = bool(np.array_equal(old["labels"], new["labels"]) and np.array_equal(old["probs"], new["probs"]))
            row = {
                "method": method, "epochs": args.epochs, "seed": args.seed, "bit_identical": identical,
                "max_abs_prob_diff": float(np.abs(old["probs"] - new["probs"]).max()),
                "acc_before": old["acc"], "acc_after": new["acc"],
                "epoch_s_before": statistics.median(r["epoch_s"] for r in runs["before"]),
                "epoch_s_after": statistics.median(r["epoch_s"] for r in runs["after"]),
            }
            row["after_over_before"] = row["epoch_s_after"] / row["epoch_s_before"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    load = os.getloadavg()
    summary = {"rows": rows, "load": load, "cpus": os.cpu_count()}
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if args.json_out:
        args.json_out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
