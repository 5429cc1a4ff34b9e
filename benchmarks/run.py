"""One entry point for the issue-17 benchmarks, each side by side with its baseline in the same run.

    python benchmarks/run.py                       # all CPU ones: knn, kmeans, eval
    python benchmarks/run.py gpu                   # benchmarks/gpu_suite.py (on a GPU machine; ≤ 8 min)
    python benchmarks/run.py knn --n 200000        # a named subset
    python benchmarks/run.py --smoke --no-append   # tiny sizes (what the test runs)

Each benchmark prints a Markdown table; unless --no-append, the tables are appended to
BENCHMARKS.md under a heading with the machine, the date and `uptime`'s load before and after.

- knn: ccli's exact torch kNN vs scikit-learn brute force (euclidean on unit rows, the same
  ranking as cosine), clustered unit rows (benchmarks/bench_neighbors.make_data), peak RSS of
  each contender from its own subprocess;
- kmeans: ccli.fit.kmeans 'torch' (k-means++, early stop, 10 restarts) vs today's previous
  default ('faiss', 10 random restarts × 300 iterations), inertia refereed in float64; on a
  synthetic mixture, or with --features F.h5 on a `ccli embed` artifact's features;
- eval: `ccli eval` whole process on digits-sized labels, wall and CPU seconds;
- gpu: benchmarks/gpu_suite.py (every GPU measurement of issue 17, each beside its baseline: augmentation
  on the device vs per-sample CPU workers, fp32 vs bf16/channels_last/fused/compile steps, exact kNN
  checked against float64), its JSON summarised as one table. Not in the default set: it is meant for
  a GPU machine; `--fashion DIR` is passed on. With --smoke it runs the suite's CPU smoke mode;
- sharded: benchmarks/bench_sharded.py, `ccli embed` and `ccli neighbors` as one process (1 and 2
  threads) vs `torchrun --nproc_per_node 2` (gloo), artifacts compared. Not in the default set (it
  pretrains and embeds Fashion-MNIST: ~30 min on the shared 2-core machine); --smoke: digits, 1 repeat.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores"


def _child(code: str) -> dict:
    """Run `code` in a fresh interpreter (PYTHONPATH = this checkout); it prints one JSON line."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


_KNN_CHILD = """
import json, resource, sys, time
import numpy as np
sys.path.insert(0, {bench!r})
from bench_neighbors import make_data
x = make_data({n}, {d})
t = time.perf_counter()
if {which!r} == 'sklearn':
    from sklearn.neighbors import NearestNeighbors
    NearestNeighbors(n_neighbors={k} + 1, algorithm='brute').fit(x).kneighbors(x)
else:
    from ccli.neighbors.knn import knn
    from ccli.neighbors.params import SearchParams
    knn(x, SearchParams(k={k}, backend='torch'), copy=False)
print(json.dumps({{'seconds': time.perf_counter() - t,
                  'rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def bench_knn(n: int, d: int = 128, k: int = 20) -> str:
    rows = []
    for which in ("sklearn", "ccli"):
        r = _child(_KNN_CHILD.format(bench=str(ROOT / "benchmarks"), n=n, d=d, k=k, which=which))
        rows.append((which, r))
    base = rows[0][1]["seconds"]
    lines = [f"kNN exact, N={n:,}, D={d}, k={k} (clustered unit rows):", "",
             "| contender | seconds | speed-up vs sklearn | peak RSS (MB) |", "|---|---:|---:|---:|"]
    names = {"sklearn": "scikit-learn NearestNeighbors(brute)", "ccli": "ccli torch (bf16 filter + heap + rescoring)"}
    for which, r in rows:
        lines.append(f"| {names[which]} | {r['seconds']:.1f} | {base / r['seconds']:.2f}× | {r['rss_mb']:.0f} |")
    return "\n".join(lines)


def bench_kmeans(n: int, d: int = 128, k: int = 10, seeds: int = 3, features: str | None = None) -> str:
    sys.path.insert(0, str(ROOT))
    from ccli.fit.kmeans import inertia_of, kmeans

    if features:
        # A features artifact of `ccli embed` (HDF5 dataset 'features'), L2-normalised the way the
        # kmeans method does by default, so the figure is the method's own fitting cost on real features.
        import h5py

        with h5py.File(features, "r") as fh:
            x = np.asarray(fh["features"], dtype=np.float32)
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        n, d = x.shape
        what = f"features of {Path(features).name}, L2-normalised"
    else:
        rng = np.random.default_rng(0)
        centres = rng.standard_normal((k * 3, d)).astype(np.float32)
        x = centres[rng.integers(0, len(centres), n)] + rng.standard_normal((n, d)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        what = f"Gaussian mixture of {3 * k} centres, unit rows"
    contenders = {"faiss 10×300 random init (previous default)": dict(backend="faiss", n_init=10, max_iter=300),
                  "ccli torch, k-means++, early stop, 10 restarts": dict(backend="torch", n_init=10)}
    lines = [f"k-means, N={n:,}, D={d}, K={k} ({what}), seeds 0..{seeds - 1}:", "",
             "| contender | seconds (mean ± std) | inertia (mean ± std) |", "|---|---:|---:|"]
    for name, kw in contenders.items():
        if kw["backend"] == "faiss":
            try:
                import faiss  # noqa: F401
            except ImportError:
                continue
        times, inertias = [], []
        for seed in range(seeds):
            t = time.perf_counter()
            labels, centroids, _, _ = kmeans(x, k, seed=seed, **kw)
            times.append(time.perf_counter() - t)
            inertias.append(inertia_of(x, labels, centroids))
        lines.append(f"| {name} | {np.mean(times):.2f} ± {np.std(times):.2f} | {np.mean(inertias):.2f} ± {np.std(inertias):.2f} |")
    return "\n".join(lines)


def bench_eval(n: int = 1797, repeats: int = 3) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        y = np.random.default_rng(0).integers(0, 10, n)
        np.save(f"{tmp}/true.npy", y)
        np.save(f"{tmp}/pred.npy", (y + 3) % 10)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        walls, cpus = [], []
        for _ in range(repeats):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "ccli", "eval", f"{tmp}/pred.npy", "--labels", f"{tmp}/true.npy",
                            "--json"], capture_output=True, env=env, check=True)
            walls.append(time.perf_counter() - t)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import numpy, scipy.optimize, sklearn.metrics"], env=env, check=True)
        baseline = time.perf_counter() - t
    return (f"`ccli eval` whole process, N={n:,}, K=10, {repeats} runs: wall {np.mean(walls):.2f} ± {np.std(walls):.2f} s, "
            f"CPU {np.mean(cpus):.2f} ± {np.std(cpus):.2f} s; baseline: importing numpy + scipy.optimize + "
            f"sklearn.metrics alone takes {baseline:.2f} s wall.")


def bench_gpu(smoke: bool, fashion: str | None) -> str:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gpu_suite

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "gpu_suite.json"
        cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu_suite.py"), "--out", str(out)]
        cmd += (["--smoke"] if smoke else []) + (["--fashion", fashion] if fashion else [])
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
        return gpu_suite.summarize(json.loads(out.read_text()))


def bench_sharded(smoke: bool) -> str:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_sharded.py")]
    cmd += ["--datasets", "digits", "--repeats", "1"] if smoke else []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", default=["knn", "kmeans", "eval"], help="knn, kmeans, eval, gpu, sharded")
    parser.add_argument("--n", type=int, default=0, help="N for knn (default 200,000) and kmeans (70,000)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the harness")
    parser.add_argument("--no-append", action="store_true", help="print only; leave BENCHMARKS.md alone")
    parser.add_argument("--fashion", default=None, help="gpu: folder with the Fashion-MNIST IDX .gz files")
    parser.add_argument("--features", default=None, help="kmeans: a `ccli embed` features .h5 instead of the synthetic mixture")
    args = parser.parse_args(argv)
    unknown = set(args.names) - {"knn", "kmeans", "eval", "gpu", "sharded"}
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    load_before = os.getloadavg()
    parts = []
    for name in args.names:
        if name == "knn":
            parts.append(bench_knn(args.n or (2000 if args.smoke else 200_000)))
        elif name == "kmeans":
            parts.append(bench_kmeans(args.n or (2000 if args.smoke else 70_000), seeds=1 if args.smoke else 3,
                                      features=args.features))
        elif name == "gpu":
            parts.append(bench_gpu(args.smoke, args.fashion))
        elif name == "sharded":
            parts.append(bench_sharded(args.smoke))
        else:
            parts.append(bench_eval(repeats=1 if args.smoke else 3))
    load_after = os.getloadavg()
    header = (f"#### benchmarks/run.py {' '.join(args.names)} — {_machine()}, {dt.date.today().isoformat()}, "
              f"load average {load_before[0]:.1f} → {load_after[0]:.1f}")
    text = "\n\n".join([header, *parts]) + "\n"
    print(text)
    if not args.no_append:
        with open(ROOT / "BENCHMARKS.md", "a") as fh:
            fh.write("\n" + text)


if __name__ == "__main__":
    main()
