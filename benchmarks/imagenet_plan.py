"""Per-item costs behind the ImageNet-1k plan of issue 17 (BENCHMARKS.md "GPU suite (issue 17)").

    PYTHONPATH=. python benchmarks/imagenet_plan.py [--n 200000] [--d 128] [--threads 1] [--json out.json]

Measures on this machine, without a GPU:
- FLOPs per image of ccli's backbones at 224 px (ImageNet stem), forward and forward + backward,
  counted by `torch.utils.flop_counter.FlopCounterMode` on the meta device (shapes only, no arithmetic;
  2 FLOPs per multiply-add), and their parameter counts;
- the CPU-side stages on a synthetic features matrix (Gaussian mixture, unit rows, N × D): k-means with
  K = 1,000 (`ccli.fit.kmeans`, torch backend: k-means++ seeding time and seconds per Lloyd iteration,
  from the progress callback's timestamps; CPU seconds of the one thread beside wall seconds) and IVF neighbours k = 20 (`ccli.neighbors.knn`, faiss IVF, ccli's
  defaults nlist = 2·√N, nprobe = 16), each then extrapolated to N = 1.28M by its cost model (printed
  beside it, labelled as extrapolation).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
N_IMAGENET, K_IMAGENET = 1_281_167, 1000


def backbone_flops(names=("resnet18-imagenet", "resnet34-imagenet", "resnet50-imagenet"), size: int = 224) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from ccli.models import build_backbone

    out = {}
    for name in names:
        with torch.device("meta"):
            model = build_backbone(name, 3, size)
            x = torch.empty(2, 3, size, size)
        with FlopCounterMode(display=False) as fwd:
            model(x)
        with FlopCounterMode(display=False) as both:
            model(x).sum().backward()
        out[name] = {"forward_gflops_per_image": fwd.get_total_flops() / 2 / 1e9,
                     "forward_backward_gflops_per_image": both.get_total_flops() / 2 / 1e9,
                     "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
                     "out_dim": int(model.out_dim), "image_size": size}
    return out


def unit_rows(n: int, d: int, seed: int = 0, centres: int = 1000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mu = rng.standard_normal((centres, d)).astype(np.float32)
    x = mu[rng.integers(0, centres, n)]
    x += 0.5 * rng.standard_normal((n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def kmeans_cost(x: np.ndarray, k: int, iters: int) -> dict:
    from ccli.fit.kmeans import kmeans

    # CPU seconds of this process (one thread) as well as wall: on a shared, loaded machine a niced process
    # waits for the core, and its CPU time is the better estimate of what a quiet core would take.
    stamps: list[tuple[float, float]] = []
    seen: set[int] = set()

    def tick(done: int, total: int) -> None:
        if done not in seen:  # the end of a restart reports its last iteration again
            seen.add(done)
            stamps.append((time.perf_counter(), time.process_time()))

    t0, c0 = time.perf_counter(), time.process_time()
    kmeans(x, k, backend="torch", n_init=1, max_iter=iters, tol=0.0, seed=0, progress=tick)
    total, total_cpu = time.perf_counter() - t0, time.process_time() - c0
    walls, cpus = np.diff([w for w, _ in stamps]), np.diff([c for _, c in stamps])
    per_iter = float(np.median(walls)) if len(walls) else float("nan")
    per_iter_cpu = float(np.median(cpus)) if len(cpus) else float("nan")
    n, d = x.shape
    return {"n": n, "d": d, "k": k, "iterations": len(stamps), "total_s": total, "total_cpu_s": total_cpu,
            "s_per_iteration": per_iter, "cpu_s_per_iteration": per_iter_cpu,
            "seeding_s": stamps[0][0] - t0 - per_iter if stamps else float("nan"),
            "seeding_cpu_s": stamps[0][1] - c0 - per_iter_cpu if stamps else float("nan"),
            "gflop_per_iteration": 2 * n * k * d / 1e9, "gflops_per_cpu_s": 2 * n * k * d / per_iter_cpu / 1e9}


def ivf_cost(x: np.ndarray, k: int = 20) -> dict:
    from ccli.neighbors.knn import SearchParams, knn
    from ccli.neighbors.knn_faiss import default_nlist

    n, d = x.shape
    t0, c0 = time.perf_counter(), time.process_time()
    knn(x, SearchParams(k=k, backend="faiss", index="ivf", nprobe=16), copy=True)
    total, total_cpu = time.perf_counter() - t0, time.process_time() - c0
    nlist = default_nlist(n)
    scanned = n * 16 / nlist  # database rows scanned per query (average list length × nprobe)
    return {"n": n, "d": d, "k": k, "nlist": nlist, "nprobe": 16, "seconds": total, "cpu_seconds": total_cpu,
            "rows_scanned_per_query": scanned, "gflop_search": 2 * n * scanned * d / 1e9}


def extrapolate(measured: dict, kind: str, n_to: int = N_IMAGENET, k_to: int = K_IMAGENET) -> dict:
    """Cost models: k-means ∝ N·K·D per iteration; IVF search ∝ N · (N·nprobe/nlist) · D, nlist = 2·√N."""
    from ccli.neighbors.knn_faiss import default_nlist

    n = measured["n"]
    if kind == "kmeans":
        factor = (n_to / n) * (k_to / measured["k"])
        return {"n": n_to, "k": k_to, "cpu_s_per_iteration": measured["cpu_s_per_iteration"] * factor,
                "factor": factor, "model": "time per Lloyd iteration ∝ N·K·D (the N×K distance product)"}
    scanned_to = n_to * 16 / default_nlist(n_to)
    factor = (n_to * scanned_to) / (n * measured["rows_scanned_per_query"])
    return {"n": n_to, "nlist": default_nlist(n_to), "rows_scanned_per_query": scanned_to,
            "cpu_seconds": measured["cpu_seconds"] * factor, "factor": factor,
            "model": "search ∝ N queries × N·nprobe/nlist rows × D (quantizer training and assignment ignored)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--d", type=int, default=128)
    parser.add_argument("--k-clusters", type=int, default=1000)
    parser.add_argument("--iters", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip", default="", help="comma-separated: flops, kmeans, ivf")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    try:
        import faiss

        faiss.omp_set_num_threads(args.threads)
    except ImportError:
        pass
    skip = set(args.skip.split(","))
    result = {"load_before": os.getloadavg(), "threads": args.threads, "nice": os.nice(0)}
    if "flops" not in skip:
        result["backbones"] = backbone_flops()
        print(json.dumps(result["backbones"], indent=1), flush=True)
    x = unit_rows(args.n, args.d) if not {"kmeans", "ivf"} <= skip else None
    if "kmeans" not in skip:
        m = kmeans_cost(x, args.k_clusters, args.iters)
        result["kmeans"] = {"measured": m, "extrapolated_1.28M": extrapolate(m, "kmeans")}
        print(json.dumps(result["kmeans"], indent=1), flush=True)
    if "ivf" not in skip:
        m = ivf_cost(x)
        result["ivf"] = {"measured": m, "extrapolated_1.28M": extrapolate(m, "ivf")}
        print(json.dumps(result["ivf"], indent=1), flush=True)
    result["load_after"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"load_before": result["load_before"], "load_after": result["load_after"]}))


if __name__ == "__main__":
    main()
