"""`graph` at N = 70,000 (Fashion-MNIST, train+test): time per joint epoch and peak memory per se_mode.

    python benchmarks/bench_graph_scaling.py [--data fashion-mnist:/usr/share/datasets/fashion-mnist]
                                             [--modes chunk,closed] [--epochs 1] [--threads 2]

Each mode is one `ccli train -m graph` process with the fashion-mnist preset, no pretraining and
no warm-up (so only the joint stage, Eq. 4.8, is timed), run under /usr/bin/time -v for the peak
resident memory. The epoch time is the engine's `epoch_time_s` of the joint stage (training steps
only; the per-epoch checkpoint and the evaluation pass are outside it). Neither mode ever holds an
N×N matrix: chunk holds ⌊N/B⌋ blocks of B×B (with their Adam moments), closed one B×B per step.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_mode(mode: str, data: str, epochs: int, threads: int, root: Path) -> dict:
    out = root / mode
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "ccli", "train", "-m", "graph", "--data", data,
           "--preset", "fashion-mnist", "--epochs", str(epochs), "--set", f"se_mode={mode}",
           "--set", "pretrain_epochs=0", "--set", "se_warmup_epochs=0", "--set", "eval_every=0",
           "--set", f"threads={threads}", "-o", str(out), "-q", "--json"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "CCLI_CACHE": str(root / "cache")})
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{mode}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    joint = [r for r in lines if r.get("stage") == "joint"]
    final = [r for r in lines if r.get("final")][-1]
    return {"mode": mode, "epoch_time_s": [round(r["epoch_time_s"], 1) for r in joint],
            "steps_per_epoch": joint[0]["step"], "peak_rss_gib": round(rss_kb / 2**20, 2), "wall_s": round(wall, 1),
            "acc_after": round(final["acc"], 3), "checkpoint_mib": round((out / "checkpoint-joint.pt").stat().st_size / 2**20)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="fashion-mnist:/usr/share/datasets/fashion-mnist")
    ap.add_argument("--modes", default="chunk,closed")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run_mode(m, args.data, args.epochs, args.threads, Path(tmp)) for m in args.modes.split(",")]
    print(json.dumps({"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                      "load_after": os.getloadavg(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
