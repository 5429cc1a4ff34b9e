"""Benchmark: `ccli embed` and `ccli neighbors` in one process vs two torchrun processes (issue 17).

For each dataset a short SimCLR pretraining makes the checkpoint (not timed), then in the same run,
alternating so that a change of machine load hits every contender alike:

- one process, 1 thread (OMP_NUM_THREADS=1): the baseline;
- one process, 2 threads (OMP_NUM_THREADS=2): what one process gets from a 2-core machine;
- torchrun --nproc_per_node 2 (gloo, 1 thread per rank, as torchrun sets by default).

Each is the whole command's wall time (interpreter start, torch import, process group, HDF5
read and write), `--force` so every run computes; then each launcher once more on a cache hit
(its fixed cost: start-up, input checks, launcher and process group). Every two-process artifact
is checked against the one-process one (same key; features within 1e-6, identical neighbour
indices).

On a 2-core machine shared with other jobs, two ranks compete for the same cores as everything
else: the figures show that the sharded path works and what it costs there, not a speedup. The
speedup belongs to several GPUs (benchmarks/gpu_suite.py, section sharded) or machines.

    python benchmarks/bench_sharded.py                               # digits + Fashion-MNIST, 3 repeats
    python benchmarks/bench_sharded.py --datasets digits --repeats 1 # quick
    python benchmarks/bench_sharded.py --json-out sharded.json
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FASHION = "/usr/share/datasets/fashion-mnist"
CONTENDERS = {
    "1 process, 1 thread": ("one", "1"),
    "1 process, 2 threads": ("one", "2"),
    "torchrun 2 processes × 1 thread": ("two", "1"),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ccli(args: list[str], cache: Path, how: str = "one", threads: str = "1") -> tuple[float, str]:
    """Run one ccli command; (wall seconds, its stdout). `how` is 'one' (plain) or 'two' (torchrun)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CCLI_CACHE": str(cache), "OMP_NUM_THREADS": threads}
    launcher = [sys.executable, "-m", "ccli"] if how == "one" else [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
        "-m", "ccli"]
    started = time.perf_counter()
    proc = subprocess.run([*launcher, *args], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"ccli {' '.join(args)} ({how}, {threads} threads) failed:\n{proc.stderr[-3000:]}")
    return wall, proc.stdout.strip()


def same_features(a: str, b: str) -> bool:
    import h5py

    with h5py.File(a) as fa, h5py.File(b) as fb:
        if fa.attrs["key"] != fb.attrs["key"]:
            return False
        names = ["features", *(f"views/{v}" for v in fa.get("views", {}))]
        return all(np.allclose(fa[n][:], fb[n][:], rtol=1e-6, atol=1e-6) for n in names)


def same_neighbors(a: str, b: str) -> bool:
    import h5py

    with h5py.File(a) as fa, h5py.File(b) as fb:
        return (fa.attrs["key"] == fb.attrs["key"] and np.array_equal(fa["indices"][:], fb["indices"][:])
                and np.allclose(fa["scores"][:], fb["scores"][:], rtol=1e-6, atol=1e-6))


def bench_dataset(spec: str, workdir: Path, repeats: int, views: str, k: int, epochs: int) -> dict:
    cache = workdir / "cache"
    print(f"[{spec}] pretraining {epochs} epoch(s) (not timed) …", file=sys.stderr, flush=True)
    preset = "digits" if spec == "digits" else "fashion-mnist"
    _, ckpt = ccli(["pretrain", "--data", spec, "--preset", preset, "--epochs", str(epochs), "--set", "knn_every=0",
                    "-o", str(workdir / f"run-{preset}"), "-q"], cache)
    stages = {
        "embed": ["embed", ckpt, "--data", spec, "--views", views, "--force", "-q"],
        "neighbors": None,  # filled in once the features exist
    }
    times: dict[str, dict[str, list[float]]] = {s: {c: [] for c in CONTENDERS} for s in stages}
    reference: dict[str, str] = {}
    checks: dict[str, bool] = {}
    hits: dict[str, dict[str, float]] = {s: {} for s in stages}
    for stage in stages:
        for repeat in range(repeats):
            order = list(CONTENDERS) if repeat % 2 == 0 else list(reversed(CONTENDERS))
            for name in order:
                how, threads = CONTENDERS[name]
                args = stages[stage]
                if stage == "neighbors":
                    args = ["neighbors", reference["embed"], "-k", str(k), "--force", "-q"]
                out = workdir / f"{stage}-{how}-{threads}.h5"
                wall, path = ccli([*args, "-o", str(out)], cache, how, threads)
                times[stage][name].append(wall)
                print(f"[{spec}] {stage:9s} {name:32s} {wall:6.1f} s", file=sys.stderr, flush=True)
                if name == "1 process, 1 thread":
                    reference[stage] = path
        # The fixed cost of each launcher: the same command once more, now a cache hit (start-up,
        # imports, input checks, process group; no computing).
        for how in ("one", "two"):
            args = stages[stage] if stage == "embed" else ["neighbors", reference["embed"], "-k", str(k), "-q"]
            args = [a for a in args if a != "--force"]
            hits[stage][how], _ = ccli([*args, "-o", str(workdir / f"{stage}-{how}-1.h5")], cache, how, "1")
        two = str(workdir / f"{stage}-two-1.h5")
        checks[stage] = (same_features if stage == "embed" else same_neighbors)(reference[stage], two)
    import h5py

    with h5py.File(reference["embed"]) as f:
        n, d = f["features"].shape
    return {"spec": spec, "n": int(n), "d": int(d), "views": views, "k": k, "times": times, "equal": checks,
            "cache_hit": hits}


def markdown(results: list[dict], load_before, load_after, repeats: int) -> str:
    lines = [f"Whole-command wall seconds, mean ± std over {repeats} runs (contenders interleaved); "
             f"load average before/after {load_before[0]:.2f}/{load_after[0]:.2f}. Two ranks on a machine "
             f"with {os.cpu_count()} cores shared with other jobs: not a speedup measurement.", "",
             "| data | stage | " + " | ".join(CONTENDERS) + " | 2 proc vs 1 proc·1 thr | 2 proc vs 1 proc·2 thr "
             "| cache hit, 1 proc / torchrun | 2-proc artifact = 1-proc |",
             "|---|---|" + "---:|" * (len(CONTENDERS) + 3) + "---|"]
    for r in results:
        for stage, per in r["times"].items():
            what = f"{r['n']:,} images, views {r['views']}" if stage == "embed" else f"{r['n']:,}×{r['d']}, k={r['k']}"
            means = {c: float(np.mean(v)) for c, v in per.items()}
            cells = [f"{np.mean(v):.1f} ± {np.std(v):.1f}" for v in per.values()]
            two = means["torchrun 2 processes × 1 thread"]
            lines.append(f"| {r['spec'].split(':')[0]} | {stage} ({what}) | " + " | ".join(cells)
                         + f" | {means['1 process, 1 thread'] / two:.2f}× | {means['1 process, 2 threads'] / two:.2f}× "
                         f"| {r['cache_hit'][stage]['one']:.1f} / {r['cache_hit'][stage]['two']:.1f} "
                         f"| {'yes' if r['equal'][stage] else 'NO'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=f"digits,fashion-mnist:{FASHION}")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--views", default="clean,weak,strong")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=1, help="pretraining epochs of the checkpoint (not timed)")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    load_before = os.getloadavg()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-sharded-") as tmp:
        for i, spec in enumerate(s for s in args.datasets.split(",") if s):
            folder = Path(tmp) / str(i)
            folder.mkdir()
            results.append(bench_dataset(spec, folder, args.repeats, args.views, args.k, args.epochs))
    load_after = os.getloadavg()
    if args.json_out:
        args.json_out.write_text(json.dumps({"load_before": load_before, "load_after": load_after,
                                             "results": results}, indent=2))
    print(markdown(results, load_before, load_after, args.repeats))


if __name__ == "__main__":
    main()
