"""Throughput of the neighbour-pair data path (anchor views + one sampled neighbour's views).

Side by side in one run, on the same images, views and neighbour table:
- `device` path, anchors only (what a plain contrastive method pays),
- `device` path with pairs (neighbour gathered from the uint8 dataset on the device),
- `cpu` loader with pairs (per-sample augmentation in DataLoader workers).

Reports pairs/s (anchors per second, each with its neighbour) per path. No model runs: this is
the data path's own cost. `--device cuda` measures the GPU form (the CPU loader then feeds
the GPU, as it would in training).

    python benchmarks/bench_pairs.py --n 20000 --size 28 --channels 1 --batch 256
"""

from __future__ import annotations

import argparse
import json
import os
import time


def main() -> None:
    import numpy as np
    import torch

    from ccli.data.augment import ViewAug
    from ccli.engine.datapath import make_data_path

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--neighbors", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=40, help="batches timed per path (after one warm-up batch)")
    parser.add_argument("--json-out")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.n, args.size, args.size, args.channels), dtype=np.uint8)
    labels = np.zeros(args.n, dtype=np.int64)
    table = rng.integers(0, args.n, (args.n, args.neighbors)).astype(np.int64)
    colour = args.channels == 3
    view = ViewAug(size=args.size, scale=(0.2, 1.0), flip_p=0.5, jitter_p=0.8, brightness=0.4, contrast=0.4,
                   saturation=0.4 if colour else 0.0, hue=0.1 if colour else 0.0, gray_p=0.2 if colour else 0.0,
                   intensity_p=0.0 if colour else 0.8)
    mean, std = [0.5] * args.channels, [0.25] * args.channels
    paths = {
        "device, anchors only": dict(augment_on="gpu", neighbors=None, neighbor_views=()),
        "device, pairs": dict(augment_on="gpu", neighbors=table, neighbor_views=[view]),
        f"cpu loader ({args.workers} workers), pairs": dict(augment_on="cpu", neighbors=table, neighbor_views=[view]),
    }
    rows = []
    for name, spec in paths.items():
        data = make_data_path(spec["augment_on"], images, labels, [view], mean, std, args.batch, args.device, seed=0,
                              workers=args.workers, neighbors=spec["neighbors"], neighbor_views=spec["neighbor_views"])
        batches = data.batches(1)
        next(batches)  # start-up (workers, first allocation) is not throughput
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        started, count = time.perf_counter(), 0
        for _ in range(args.steps):
            batch = next(batches, None)
            if batch is None:
                break
            count += len(batch["index"])
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - started
        rows.append({"path": name, "pairs_per_s": count / elapsed, "batches": args.steps})
        print(f"{name:36s} {count / elapsed:10.0f} anchors/s", flush=True)
        del batches, data
    load = os.getloadavg()
    print(f"N={args.n} {args.size}×{args.size}×{args.channels} batch {args.batch} on {args.device}, "
          f"threads {args.threads}; load {load[0]:.2f}")
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump({"rows": rows, "args": vars(args), "load": load}, fh, indent=2)


if __name__ == "__main__":
    main()
