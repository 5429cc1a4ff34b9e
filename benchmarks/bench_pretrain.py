"""Representation-stage benchmarks (issue 3): throughput and clustering quality, side by side.

    python benchmarks/bench_pretrain.py throughput [--device auto] [--steps 3] [--batch-size 256]
    python benchmarks/bench_pretrain.py quality digits [--layer projector]
    python benchmarks/bench_pretrain.py quality fashion-mnist:/usr/share/datasets/fashion-mnist

`throughput` measures, in one run on one machine:
  1. augmentation alone (SimCLR views of 32 px RGB images, images/s): a reference torchvision
     `transforms.v2.Compose` pipeline applied per sample, ccli's per-sample CPU path
     (`SampleAugmenter`, what DataLoader workers run) and ccli's batched path (`BatchAugmenter`,
     what `--augment-on gpu` runs on the training device);
  2. SimCLR pretraining steps of ResNet-18 (CIFAR variant, 32 px, batch 256) with
     `--augment-on cpu` and `--augment-on gpu`, through the real engine (`ccli.engine.fit`);
  3. `ccli embed` (the library call, HDF5 writing included) of the same backbone.
Images are random uint8 (throughput does not depend on content). On a CPU-only machine
"gpu" means the batched path on CPU tensors; GPU figures need a GPU.

`quality` runs the chain the user runs, pretrain → embed → k-means (scikit-learn, n_init 10),
with the dataset's preset, and prints ACC/NMI/ARI next to k-means on raw pixels.

Both print one JSON object per result line on stdout, plus the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def machine() -> dict:
    import torch

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


# ------------------------------------------------------------------------------------------
# Throughput
# ------------------------------------------------------------------------------------------
def bench_augment(images: np.ndarray, seconds: float = 5.0) -> None:
    import torch
    from torchvision.transforms import v2

    from ccli.data.augment import SampleAugmenter, simclr_view
    from ccli.data.gpu_augment import BatchAugmenter

    mean, std = [0.49, 0.48, 0.45], [0.25, 0.24, 0.26]
    views = [simclr_view(32, 3)] * 2
    tensors = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    reference = v2.Compose([
        v2.RandomResizedCrop(32, scale=(0.2, 1.0), antialias=True), v2.RandomHorizontalFlip(),
        v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), v2.RandomGrayscale(p=0.2),
        v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std),
    ])
    sample = SampleAugmenter(views, mean, std)

    def timed(fn, per_call: int) -> float:
        fn()
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            fn()
            done += per_call
        return done / (time.perf_counter() - start)

    counter = iter(range(10**9))
    rate_ref = timed(lambda: [reference(tensors[i % len(tensors)]) for i in [next(counter)] for _ in range(2)], 1)
    rate_cpu = timed(lambda: sample(tensors[next(counter) % len(tensors)], next(counter)), 1)
    batch = tensors[:256]
    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        aug = BatchAugmenter(views, mean, std)
        x = batch.to(device)
        gen = torch.Generator(device=device).manual_seed(0)

        def run():
            out = aug(x, gen)
            if device == "cuda":
                torch.cuda.synchronize()
            return out

        emit({"bench": "augment", "impl": f"ccli batched (BatchAugmenter) on {device}", "images_per_s": round(timed(run, 256), 1),
              "note": "2 SimCLR views per image, 32 px RGB"})
    emit({"bench": "augment", "impl": "reference torchvision v2.Compose, per sample", "images_per_s": round(rate_ref, 1),
          "note": "2 SimCLR views per image, 32 px RGB, one process"})
    emit({"bench": "augment", "impl": "ccli per-sample (SampleAugmenter), one process", "images_per_s": round(rate_cpu, 1),
          "note": "2 SimCLR views per image, 32 px RGB; DataLoader workers run this"})


def bench_training(images: np.ndarray, device: str, steps: int, batch_size: int, augment_on: str) -> dict:
    import torch

    from ccli.data.augment import simclr_view
    from ccli.engine import RunFiles, fit, make_data_path, resolve_device
    from ccli.methods.pretrain import PretrainConfig, build_task, effective
    from ccli.models import build_backbone

    dev = resolve_device(device)
    from ccli.config import build_config

    # Flat keys: build_config sends the engine's (batch_size, epochs, lr, …) to its section.
    settings = {"method": "simclr", "backbone": "resnet18-cifar", "batch_size": batch_size, "epochs": 1,
                "optimizer": "sgd", "lr": 0.4, "temperature": 0.1, "proj_hidden": 512, "knn_every": 0,
                "augment_on": augment_on}
    cfg = effective(build_config(PretrainConfig, [("bench_pretrain", settings)]))
    torch.manual_seed(0)
    task, _, _ = build_task(cfg, build_backbone("resnet18-cifar", 3, 32))
    n = batch_size * (steps + 1)  # one warm-up step, then `steps` timed steps
    data = make_data_path(augment_on, images[:n], np.zeros(n, np.int64), [simclr_view(32, 3)] * 2,
                          [0.49, 0.48, 0.45], [0.25, 0.24, 0.26], batch_size, dev, seed=0)
    times: list[float] = []

    from step_timing import TimedBatches

    with tempfile.TemporaryDirectory() as tmp:
        fit(task, TimedBatches(data, dev, times), cfg.engine,
            RunFiles.for_output(Path(tmp)), config_record={}, device=dev)
    timed = times[1:]  # the first step includes worker start-up and allocator warm-up
    return {"bench": "pretrain", "augment_on": augment_on, "device": str(dev), "backbone": "resnet18-cifar",
            "image_size": 32, "batch_size": batch_size, "timed_steps": len(timed),
            "images_per_s": round(batch_size * len(timed) / sum(timed), 1) if timed else None,
            "s_per_step": round(sum(timed) / max(1, len(timed)), 3)}


def bench_embed(images: np.ndarray, device: str, batch_size: int) -> dict:
    import torch

    from ccli.engine.checkpoint import save_atomic
    from ccli.methods.pretrain import PretrainConfig, build_task, effective, embed
    from ccli.models import build_backbone

    cfg = effective(PretrainConfig(method="simclr", backbone="resnet18-cifar"))
    torch.manual_seed(0)
    backbone = build_backbone("resnet18-cifar", 3, 32)
    task, bb, pj = build_task(cfg, backbone)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        np.savez(tmp / "data.npz", images=images, labels=np.zeros(len(images), np.int64))
        ckpt = tmp / "ckpt.pt"
        save_atomic({"kind": "pretrain", "method": "simclr", "model": task.model.state_dict(), "config": {},
                     "backbone": {"name": "resnet18-cifar", "in_channels": 3, "image_size": 32, "out_dim": 512},
                     "data": {"spec": f"npz:{tmp / 'data.npz'}", "split": "all"},
                     "normalization": {"mean": [0.5] * 3, "std": [0.25] * 3}, "backbone_prefix": bb,
                     "projector_prefix": pj,
                     "projector": {"in_dim": 512, "hidden": 512, "out_dim": 128, "bn": False}}, ckpt)
        start = time.perf_counter()
        path, _ = embed(ckpt, f"npz:{tmp / 'data.npz'}", "all", batch_size=batch_size, device=device,
                        out=tmp / "f.h5")
        elapsed = time.perf_counter() - start
    return {"bench": "embed", "device": device, "backbone": "resnet18-cifar", "image_size": 32,
            "images": len(images), "batch_size": batch_size, "images_per_s": round(len(images) / elapsed, 1),
            "note": "library call incl. dataset load, checkpoint hashing and HDF5 writes"}


def throughput(args) -> None:
    import torch

    from ccli import log

    log.set_verbosity(quiet=True)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.batch_size * (args.steps + 1), 32, 32, 3), dtype=np.uint8)
    emit({"machine": machine()})
    bench_augment(images, seconds=args.seconds)
    for augment_on in ("cpu", "gpu"):
        emit(bench_training(images, args.device, args.steps, args.batch_size, augment_on))
    emit(bench_embed(images[: args.embed_images] if args.embed_images <= len(images)
                     else rng.integers(0, 256, (args.embed_images, 32, 32, 3), dtype=np.uint8),
                     args.device, 512))
    emit({"machine_after": machine()})


# ------------------------------------------------------------------------------------------
# Quality
# ------------------------------------------------------------------------------------------
def quality(args) -> None:
    import h5py
    from sklearn.cluster import KMeans

    from ccli import log
    from ccli.cli.pretrain_cmd import resolve_pretrain_config
    from ccli.data.sources import load_dataset
    from ccli.methods.pretrain import embed, pretrain
    from ccli.metrics import clustering_scores

    log.set_verbosity(quiet=not args.verbose)
    preset = args.preset or ("digits" if args.data == "digits" else args.data.split(":", 1)[0])
    emit({"machine": machine(), "data": args.data, "preset": preset, "sets": args.set})

    def scores(x, y, seed=0):
        pred = KMeans(len(np.unique(y)), n_init=10, random_state=seed).fit_predict(x)
        s = clustering_scores(y, pred)
        return {k: round(float(s[k]), 4) for k in ("acc", "nmi", "ari")}

    if not args.skip_raw:
        ds = load_dataset(args.data)
        raw = ds.images.reshape(len(ds.images), -1).astype(np.float32) / 255.0
        start = time.perf_counter()
        emit({"features": "raw pixels", **scores(raw, ds.labels), "kmeans_s": round(time.perf_counter() - start, 1)})
    with tempfile.TemporaryDirectory() as tmp:
        cfg = resolve_pretrain_config(preset, args.set or [], {"method": args.method})
        start = time.perf_counter()
        result = pretrain(cfg, args.data, "all", out=Path(tmp) / "run", force=True)
        t_pre = time.perf_counter() - start
        for layer in args.layer:
            t0 = time.perf_counter()
            path, _ = embed(result.checkpoint, args.data, layer=layer, out=Path(tmp) / f"{layer}.h5")
            t_emb = time.perf_counter() - t0
            with h5py.File(path) as f:
                x, y = f["features"][:], f["labels"][:]
            x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
            t0 = time.perf_counter()
            s = scores(x, y)
            t_km = time.perf_counter() - t0
            emit({"features": f"{cfg.method} {layer}", **s, "pretrain_s": round(t_pre, 1), "embed_s": round(t_emb, 1),
                  "kmeans_s": round(t_km, 1), "chain_s": round(t_pre + t_emb + t_km, 1),
                  "epochs": cfg.epochs, "last_epoch": result.history[-1] if result.history else None})
    emit({"machine_after": machine()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--device", default="auto")
    t.add_argument("--steps", type=int, default=3)
    t.add_argument("--batch-size", type=int, default=256)
    t.add_argument("--seconds", type=float, default=5.0, help="time per augmentation measurement")
    t.add_argument("--embed-images", type=int, default=2048)
    t.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    q = sub.add_parser("quality")
    q.add_argument("data")
    q.add_argument("--preset")
    q.add_argument("--method", default=None)
    q.add_argument("--set", action="append")
    q.add_argument("--layer", nargs="+", default=["projector", "backbone"])
    q.add_argument("--skip-raw", action="store_true")
    q.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    throughput(args) if args.mode == "throughput" else quality(args)


if __name__ == "__main__":
    main()
