"""Per-step cost of cctc's trend module on CPU: the batch's M_S and weights, and L_z + L_y, against a whole GCC step.

    PYTHONPATH=$PWD python benchmarks/bench_trend.py --batch 128 --window 3 --steps 30

A "step" is the gcc-phase loss step of the digits preset (small CNN, 2 views + 3 RGC neighbour
images + 1 AGC neighbour in one forward) with backward; the trend part is `TrendQueue.weights`
plus both consistency losses and their share of the backward. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import time


def main() -> None:
    import torch

    from ccli.losses.gcc import agc_cluster_loss, rgc_loss
    from ccli.losses.trend import cluster_consistency_loss, instance_consistency_loss
    from ccli.methods.trend import TrendQueue
    from ccli.models import build_backbone
    from ccli.models.cluster_heads import ContrastiveClusterer

    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--window", type=int, default=3)
    ap.add_argument("--n", type=int, default=1797)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = ContrastiveClusterer(build_backbone("small_cnn", 1, 8), 128, args.k)
    queue = TrendQueue(args.n, args.window, args.k)
    for _ in range(args.window):
        probs = torch.softmax(torch.randn(args.n, args.k) * 6, 1)
        queue.push(probs)
    b = args.batch
    views = [torch.randn(b, 1, 8, 8) for _ in range(6)]
    index = torch.randperm(args.n)[:b]
    omega = torch.full((b, 3), 0.8)

    def step(trend: bool) -> tuple[float, float]:
        t0 = time.perf_counter()
        hs, ps = net(views)
        r = torch.stack(hs[2:5], 1) * omega[:, :, None]
        loss = rgc_loss(hs[0], hs[1], r, omega, 0.5) + agc_cluster_loss(ps[0], ps[5], 0.5, 1.0)
        t_trend = 0.0
        if trend:
            t1 = time.perf_counter()
            w = queue.weights(index, 0.85)
            extra = 0.7 * instance_consistency_loss(w, hs[0]) + 0.3 * cluster_consistency_loss(w, ps[0])
            t_trend = time.perf_counter() - t1
            loss = loss + extra
        loss.backward()
        net.zero_grad(set_to_none=True)
        return time.perf_counter() - t0, t_trend

    for _ in range(3):
        step(True)
    plain = sorted(step(False)[0] for _ in range(args.steps))
    with_trend = [step(True) for _ in range(args.steps)]
    total = sorted(t for t, _ in with_trend)
    forward = sorted(t for _, t in with_trend)
    med = lambda xs: xs[len(xs) // 2]  # noqa: E731
    out = {"batch": b, "window": args.window, "step_without_trend_ms": 1e3 * med(plain),
           "step_with_trend_ms": 1e3 * med(total), "trend_forward_ms": 1e3 * med(forward),
           "trend_share_of_step": (med(total) - med(plain)) / med(total),
           "trend_forward_share": med(forward) / med(total),
           "queue_bytes_1_28M": 1_281_167 * args.window * 2, "load": os.getloadavg()[0]}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
