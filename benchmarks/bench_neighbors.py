"""Benchmark: `ccli neighbors` against scikit-learn's brute-force NearestNeighbors (issue 4).

Every contender runs in its own subprocess, so its peak memory is the subprocess's
`resource.getrusage(RUSAGE_SELF).ru_maxrss` and nothing leaks between them. The ccli
contenders run the real command (`ccli neighbors FEATURES.h5 …` in-process in the
subprocess: HDF5 read, search, HDF5 write); scikit-learn gets the same matrix from a .npy
file. Approximate indexes are scored by recall@k against scikit-learn's exact answer.

The data are an embedding-like Gaussian mixture (unit-normalised rows around 1,000
centres): uniform random vectors would be the adversarial case for IVF/HNSW, clustered
vectors are what contrastive embeddings look like.

    python benchmarks/bench_neighbors.py                      # N=200,000, D=128, k=20
    python benchmarks/bench_neighbors.py --n 20000 --only ccli-faiss-ivf,sklearn-brute
    python benchmarks/bench_neighbors.py --purity F.h5 [G.h5 …]  # plain vs --multi-view purity@20

The purity mode runs `ccli neighbors F.h5 -k 20 --json` plain and with `--multi-view`
(each filter head) on features that `ccli embed --views weak,strong` made, and tabulates
the purity of every cascade step beside plain kNN.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CONTENDERS = {
    # name: (description, extra ccli options or None for scikit-learn)
    "sklearn-brute": ("scikit-learn NearestNeighbors(algorithm='brute'), euclidean on unit rows (= cosine ranking)", None),
    "sklearn-brute-cosine": ("scikit-learn NearestNeighbors(algorithm='brute', metric='cosine')", None),
    "ccli-faiss-ivf": ("ccli neighbors --backend faiss --index ivf (defaults: nlist 2·√N, nprobe 16)", ["--backend", "faiss", "--index", "ivf"]),
    "ccli-faiss-hnsw": ("ccli neighbors --backend faiss --index hnsw (defaults: M 32, efC 40, efSearch 64)", ["--backend", "faiss", "--index", "hnsw"]),
    "ccli-faiss-flat": ("ccli neighbors --backend faiss --index flat (exact)", ["--backend", "faiss", "--index", "flat"]),
    "ccli-torch": ("ccli neighbors --backend torch (exact blocked matmul + top-k)", ["--backend", "torch"]),
}
DEFAULT = "sklearn-brute,ccli-faiss-ivf,ccli-faiss-hnsw,ccli-torch,ccli-faiss-flat"


def make_data(n: int, d: int, seed: int = 0, centres: int = 1000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mu = rng.standard_normal((centres, d)).astype(np.float32)
    x = mu[rng.integers(0, centres, n)] + 0.5 * rng.standard_normal((n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def write_features(path: Path, x: np.ndarray) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from ccli.store import ArtifactWriter, content_key

    config = {"benchmark": "bench_neighbors", "n": len(x), "d": x.shape[1]}
    with ArtifactWriter(path, "features", content_key("features", config, []), config, []) as w:
        w.write("features", x)
        w.write("labels", np.full(len(x), -1, dtype=np.int64))
        w.write("index", np.arange(len(x), dtype=np.int64))


# -- one contender, inside its own subprocess ---------------------------------------------------
def run_contender(name: str, workdir: Path, k: int) -> dict:
    import resource

    started = time.perf_counter()
    if name.startswith("sklearn"):
        from sklearn.neighbors import NearestNeighbors

        x = np.load(workdir / "x.npy")
        metric = "cosine" if name.endswith("cosine") else "euclidean"
        nn = NearestNeighbors(n_neighbors=k + 1, algorithm="brute", metric=metric).fit(x)
        _, ind = nn.kneighbors(x)
        indices = _drop_self_rows(ind, k)
    else:
        from ccli.cli.main import run
        from ccli.store import open_artifact

        out = workdir / f"{name}.h5"
        args = ["neighbors", str(workdir / "features.h5"), "-k", str(k), "-o", str(out), "--force", "-q",
                "--device", "cpu", *CONTENDERS[name][1]]
        try:
            run(args)
        except SystemExit as exc:
            if exc.code:
                raise RuntimeError(f"ccli exited with {exc.code}") from None
        with open_artifact(out, "neighbors") as art:
            indices = art.read("indices")
    elapsed = time.perf_counter() - started
    np.save(workdir / f"{name}.idx.npy", indices)
    return {"name": name, "seconds": elapsed, "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _drop_self_rows(ind: np.ndarray, k: int) -> np.ndarray:
    is_self = ind == np.arange(len(ind))[:, None]
    order = np.argsort(is_self, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(ind, order, axis=1)


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean fraction of the exact neighbours found (ids are unique within a row)."""
    hits = 0
    for start in range(0, len(found), 50_000):
        both = np.sort(np.concatenate([found[start : start + 50_000], exact[start : start + 50_000]], axis=1), axis=1)
        hits += int((both[:, 1:] == both[:, :-1]).sum())  # an id in both lists appears twice in a row
    return hits / exact.size


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gb": round(mem_gb, 1), "python": platform.python_version(),
            "date": dt.date.today().isoformat()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--d", type=int, default=128)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--only", default=DEFAULT, help=f"comma list of {', '.join(CONTENDERS)}")
    parser.add_argument("--json-out", type=Path, help="also write the results here")
    parser.add_argument("--purity", type=Path, nargs="+", help="features artifacts with weak/strong views: purity table")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="extra --set for the multi-view runs")
    parser.add_argument("--run", help=argparse.SUPPRESS)  # internal: run one contender
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.run:
        print(json.dumps(run_contender(args.run, args.workdir, args.k)))
        return

    if args.purity:
        runs = [purity_runs(path, args.k, args.sets) for path in args.purity]
        if args.json_out:
            args.json_out.write_text(json.dumps({"machine": machine(), "sets": args.sets, "runs": runs}, indent=2))
        print(purity_table(runs))
        return

    names = [s for s in args.only.split(",") if s]
    unknown = [s for s in names if s not in CONTENDERS]
    if unknown:
        parser.error(f"unknown contender(s) {unknown}")
    info = machine()
    with tempfile.TemporaryDirectory(prefix="bench-neighbors-") as tmp:
        workdir = Path(tmp)
        x = make_data(args.n, args.d)
        np.save(workdir / "x.npy", x)
        write_features(workdir / "features.h5", x)
        del x
        load_before = os.getloadavg()
        results = []
        for name in names:
            print(f"running {name} …", file=sys.stderr, flush=True)
            proc = subprocess.run(
                [sys.executable, __file__, "--run", name, "--workdir", str(workdir), "--k", str(args.k)],
                capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
            )
            if proc.returncode != 0:
                print(proc.stderr, file=sys.stderr)
                raise SystemExit(f"{name} failed")
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            row["description"] = CONTENDERS[name][0]
            results.append(row)
            print(f"  {row['seconds']:.1f} s, peak RSS {row['max_rss_mb']:.0f} MB", file=sys.stderr, flush=True)
        exact_name = next((r["name"] for r in results if r["name"] in ("sklearn-brute", "ccli-torch", "ccli-faiss-flat", "sklearn-brute-cosine")), None)
        if exact_name:
            exact = np.load(workdir / f"{exact_name}.idx.npy")
            for row in results:
                row["recall"] = recall(np.load(workdir / f"{row['name']}.idx.npy"), exact)
            reference = next((r for r in results if r["name"] == "sklearn-brute"), None)
            if reference:
                for row in results:
                    row["speedup_vs_sklearn"] = reference["seconds"] / row["seconds"]
        load_after = os.getloadavg()

    report = {"machine": info, "load_before": load_before, "load_after": load_after, "n": args.n, "d": args.d,
              "k": args.k, "exact_reference": exact_name, "results": results}
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2))
    print(markdown(report))


def _ccli_json(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, "-m", "ccli", *args, "--json", "-q"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    if proc.returncode != 0:
        raise SystemExit(f"ccli {' '.join(args)} failed: {proc.stderr.strip()}")
    return json.loads(proc.stdout)


def purity_runs(features: Path, k: int, sets: list[str]) -> dict:
    """Plain kNN and the cascade with each filter head, on one features artifact."""
    extra = [a for s in sets for a in ("--set", s)]
    plain = _ccli_json(["neighbors", str(features), "-k", str(k)])
    heads = {}
    for head in ("kmeans", "scan_warmup"):
        started = time.perf_counter()
        report = _ccli_json(["neighbors", str(features), "-k", str(k), "--multi-view", "--filter-head", head, *extra])
        steps = [s for s in report["steps"] if s["step"] != "knn"]
        heads[head] = {"steps": steps, "seconds": time.perf_counter() - started}
    return {"features": str(features), "n": plain["n"], "k": k, "knn": plain["purity"][str(k)], "heads": heads}


def purity_table(runs: list[dict]) -> str:
    lines = ["| features | N | plain kNN@k | filter head | cascade steps (purity@size) | final − plain | seconds |",
             "|---|---:|---:|---|---|---:|---:|"]
    for run in runs:
        for head, result in run["heads"].items():
            steps = " → ".join(f"{s['step']} {s['purity']:.4f}@{s['k']}" for s in result["steps"])
            final = result["steps"][-1]["purity"]
            lines.append(
                f"| {run['features']} | {run['n']:,} | {run['knn']:.4f} | {head} | {steps} | "
                f"{final - run['knn']:+.4f} | {result['seconds']:.0f} |"
            )
    return "\n".join(lines)


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"N={report['n']:,}, D={report['d']}, k={report['k']}; {m['cpu']}, {m['cores']} cores, {m['ram_gb']} GB RAM; "
        f"{m['date']}; load average before/after {report['load_before'][0]:.1f}/{report['load_after'][0]:.1f}; "
        f"recall@k against {report['exact_reference']}.",
        "",
        "| contender | seconds | speed-up vs sklearn | recall@k | peak RSS (MB) |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        speed = f"{r['speedup_vs_sklearn']:.2f}×" if "speedup_vs_sklearn" in r else "–"
        rec = f"{r['recall']:.4f}" if "recall" in r else "–"
        lines.append(f"| {r['description']} | {r['seconds']:.1f} | {speed} | {rec} | {r['max_rss_mb']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
