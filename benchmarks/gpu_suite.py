"""Every GPU measurement of issue 17 in one prepared run (≤ 8 minutes) that writes one JSON of figures.

    PYTHONPATH=. python benchmarks/gpu_suite.py [--out FILE] [--fashion DIR] [--sections augment,mfu,knn,fashion]
    PYTHONPATH=. python benchmarks/gpu_suite.py --smoke --out /tmp/s.json   # every section tiny, on CPU, < 1 min

Made for a GPU machine lent for a few minutes: no `pip install -e .` needed (run from the repository root
with `PYTHONPATH=.`), no network, no faiss (ccli's torch backends are used), no scikit-learn for the
measurements. The JSON goes to --out, else $OUT/gpu_suite.json when $OUT is set, else ./gpu_suite.json, and is
rewritten after every section, so a run killed part-way still returns the figures taken so far.

Sections (each in its own subprocess, killed at its own time cap; a killed section keeps what it measured):

- augment: SimCLR pretraining steps of ResNet-18 (CIFAR stem, 32 px RGB, random uint8 images) through the real
  engine (`ccli.engine.fit`) with `augment_on=gpu` (uint8 batch on the device, `BatchAugmenter`) and with
  `augment_on=cpu` (DataLoader workers running `SampleAugmenter` per image): same device, model and batch.
  images/s of each and the ratio (issue 17's bar: ≥ 5×).
- mfu: the same model and loss in a hand-written step without the engine's per-step host sync, side by side:
  fp32, bf16 autocast, + channels_last, + fused SGD, + torch.compile (compile time reported apart), and the
  best eager setting with on-device augmentation inside the step. FLOPs per step are counted once with
  `torch.utils.flop_counter.FlopCounterMode` (matmul/conv FLOPs of forward + backward, 2 per multiply-add;
  augmentation and element-wise ops not counted); MFU = FLOPs per step / step time / bf16 dense peak.
- knn: exact kNN at N = 1,000,000, D = 512, k = 20 (clustered unit rows) with ccli's torch backend on the
  device (`ccli.neighbors.knn.search`): seconds, rows/s, peak GPU memory; exactness spot-checked on a sample of
  rows against float64 brute force (ids equal, or equal float64 scores where tied).
- fashion: the whole Fashion-MNIST chain (`ccli train --method cc --preset fashion-mnist`, from the IDX files in
  --fashion DIR to predictions and ACC/NMI/ARI) within the section's time: a 2-epoch calibration run gives the
  epoch time, then the epochs that fit the rest of the budget (cc: the best method in our CPU comparison,
  BENCHMARKS.md "Fashion-MNIST (all 70,000 images)": cc 0.742 vs kmeans-on-SimCLR 0.699 vs dcacn 0.685 ACC).
  Skipped, with the reason, when --fashion is not given or lacks the four files.
- sharded: `ccli embed` and `ccli neighbors` as one process on one GPU and under `torchrun --nproc_per_node 2`
  on two (NCCL), whole-command wall time of each, and the two-process artifact compared with the one-process
  one (features' largest difference, neighbour rows that agree). Needs ≥ 2 visible GPUs: with fewer it is
  skipped at once (no process started), so a 1-GPU machine loses no time to it. Data: --fashion DIR if given,
  else a synthetic IDX stand-in of --sharded-n images; the checkpoint is a 1-epoch pretraining (not timed).

--smoke runs every section tiny on CPU (small CNN, a few steps, N = 3,000 kNN, a synthetic 28×28 IDX stand-in
for Fashion-MNIST, sharded as two gloo ranks), to check the harness; its figures say nothing about any GPU.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import os
import platform
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("augment", "mfu", "knn", "fashion", "sharded")
# Seconds per section in a full run (sum 445 s + ~4 × 10 s of interpreter/CUDA start-up ≈ 8 minutes). sharded
# runs last, on what the budget leaves, and only with ≥ 2 GPUs (give it its own run: --sections sharded).
CAPS = {"augment": 80, "mfu": 125, "knn": 90, "fashion": 150, "sharded": 150}
# Smoke work takes seconds; the caps are generous so a starved, niced CI process (load 10+ on 2 cores,
# where importing torch alone took ~40 s) is not killed before it starts.
SMOKE_CAPS = {"augment": 150, "mfu": 150, "knn": 150, "fashion": 200, "sharded": 300}
BUDGET_S, SMOKE_BUDGET_S = 470.0, 700.0  # the whole suite; a section gets min(its cap, what the budget leaves)
MIN_CAP = 20.0  # seconds kept for each section still to come
KILL_GRACE = 10.0  # a section's process is killed this long after its cap (it stops measuring before)
# Dense (no 2:4 sparsity) bf16 tensor-core peaks in TFLOP/s from NVIDIA's datasheets; the sparse figure
# the datasheets print first is twice these. Matched on torch.cuda.get_device_name().
BF16_PEAKS = {
    "H200": (989.4, "NVIDIA H200 datasheet (SXM): 1,979 TFLOPS bf16 with sparsity → 989.4 dense"),
    "H100 SXM": (989.4, "NVIDIA H100 datasheet (SXM): 1,979 TFLOPS bf16 with sparsity → 989.4 dense"),
    "H100 PCIe": (756.5, "NVIDIA H100 datasheet (PCIe): 1,513 TFLOPS bf16 with sparsity → 756.5 dense"),
    "H100": (989.4, "NVIDIA H100 datasheet (SXM assumed): 989.4 dense"),
    "A100": (312.0, "NVIDIA A100 datasheet: 312 TFLOPS bf16 dense"),
    "L40S": (362.05, "NVIDIA L40S datasheet: 733 TFLOPS bf16 with sparsity → 362 dense"),
}
# Pure-Python packages the chain needs that a bare torch image may lack (presets, artifacts, warnings). Carry
# them to such a machine with `pip install --target benchmarks/_work/pydeps pyyaml h5py rich` (h5py is a
# binary wheel: match the machine's Python); the suite puts that folder on every process's path.
CHAIN_MODULES = ("yaml", "h5py", "rich")
PYDEPS = ROOT / "benchmarks" / "_work" / "pydeps"
FASHION_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz")


# ------------------------------------------------------------------------------------------
# Plumbing: import blocking (to rehearse a machine without faiss), partial results, machine facts
# ------------------------------------------------------------------------------------------
_BLOCKER = """
import sys
# A None entry in sys.modules is how Python spells "absent": `import X` raises ModuleNotFoundError and
# importlib.util.find_spec('X') returns None, as on a machine without X.
for _name in [n for n in @NAMES@.split(',') if n]:
    for _m in [m for m in list(sys.modules) if m == _name or m.startswith(_name + '.')]:
        del sys.modules[_m]
    sys.modules[_name] = None
"""


def search_path() -> str:
    """PYTHONPATH for the suite's processes: this checkout, carried packages (if any), then the caller's."""
    parts = [str(ROOT)] + ([str(PYDEPS)] if PYDEPS.is_dir() else []) + [os.environ.get("PYTHONPATH", "")]
    return os.pathsep.join(p for p in parts if p)


def block_imports(names: str) -> None:
    """Make `import NAME` fail for each comma-separated NAME (rehearses a machine that lacks them)."""
    exec(_BLOCKER.replace("@NAMES@", repr(names)), {})


class Recorder:
    """A section's figures, rewritten atomically to `path` after every measurement."""

    def __init__(self, path: Path):
        self.path = path
        self.data: dict = {}

    def put(self, key: str, value) -> None:
        self.data[key] = value
        write_json(self.path, self.data)


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, default=float) + "\n")
    tmp.replace(path)


def machine_info() -> dict:
    info = {"python": platform.python_version(), "platform": platform.platform(),
            "cpu": platform.processor() or platform.machine(),
            "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()], "nice": os.nice(0)}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["cuda_available"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            info["cuda"] = torch.version.cuda
            info["gpu"] = torch.cuda.get_device_name(0)
            info["gpu_count"] = torch.cuda.device_count()
            info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    except ImportError as exc:
        info["torch"] = f"not importable: {exc}"
    from importlib import metadata, util

    dists = {"torchvision": "torchvision", "triton": "triton", "faiss": None, "h5py": "h5py", "yaml": "pyyaml",
             "sklearn": "scikit-learn", "scipy": "scipy", "typer": "typer", "rich": "rich"}
    for name, dist in dists.items():  # found without importing them (importing scikit-learn alone takes seconds)
        if util.find_spec(name) is None:
            info[f"{name}_version"] = None
            continue
        info[f"{name}_version"] = "present"
        for candidate in ([dist] if dist else ["faiss-gpu", "faiss-cpu", "faiss"]):
            try:
                info[f"{name}_version"] = metadata.version(candidate)
                break
            except metadata.PackageNotFoundError:
                pass
    return info


def bf16_peak(device_name: str | None, override: float) -> dict:
    if override > 0:
        return {"bf16_dense_tflops": override, "source": "--peak-tflops given on the command line", "assumed": True}
    for key, (tflops, source) in BF16_PEAKS.items():
        if device_name and key in device_name:
            return {"bf16_dense_tflops": tflops, "source": source, "assumed": False}
    return {"bf16_dense_tflops": None, "source": f"no known bf16 peak for {device_name!r}; pass --peak-tflops",
            "assumed": True}


def _device(args):
    import torch

    if args.smoke or args.device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    dev = torch.device(args.device if args.device != "auto" else "cuda")
    return torch.device("cuda", dev.index if dev.index is not None else torch.cuda.current_device())


def _sync(dev) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


# ------------------------------------------------------------------------------------------
# (a) on-device batched augmentation vs per-sample CPU augmentation, through the engine
# ------------------------------------------------------------------------------------------
def _pretrain_setup(args, dev):
    import dataclasses

    from ccli.data.augment import simclr_view
    from ccli.methods.pretrain import PretrainConfig, effective

    cfg = effective(PretrainConfig(method="simclr", backbone=args.backbone, seed=0))
    engine = dataclasses.replace(cfg.engine, epochs=1, batch_size=args.batch_size, optimizer="sgd", lr=0.3,
                                 knn_every=0, eval_every=0, compile=False)
    cfg = dataclasses.replace(cfg, engine=engine)
    views = [simclr_view(args.image_size, 3)] * 2
    mean, std = [0.49, 0.48, 0.45], [0.25, 0.24, 0.26]
    return cfg, views, mean, std


def _build_model(cfg, args, dev):
    import torch

    from ccli.methods.pretrain.models import build_task
    from ccli.models import build_backbone

    torch.manual_seed(0)
    task, _, _ = build_task(cfg, build_backbone(args.backbone, 3, args.image_size))
    return task


def section_augment(args, rec: Recorder, cap: float) -> None:
    import dataclasses

    import numpy as np
    import torch

    from ccli import log
    from ccli.engine import RunFiles, fit, make_data_path

    log.set_verbosity(quiet=True)
    dev = _device(args)
    start = time.perf_counter()
    cfg, views, mean, std = _pretrain_setup(args, dev)
    steps = args.steps
    n = args.batch_size * (steps + 2)
    images = np.random.default_rng(0).integers(0, 256, (n, args.image_size, args.image_size, 3), dtype=np.uint8)
    rec.put("setup", {"device": str(dev), "backbone": args.backbone, "image_size": args.image_size,
                      "batch_size": args.batch_size, "views": 2, "method": "simclr", "optimizer": "sgd",
                      "engine": {"precision": cfg.engine.precision, "channels_last": cfg.engine.channels_last,
                                 "compile": False},
                      "images": "random uint8 (throughput does not depend on content)"})
    results = {}
    # The GPU path first: it is the fast one, so the CPU path gets whatever time is left.
    for k, augment_on in enumerate(("gpu", "cpu")):
        left = cap - (time.perf_counter() - start) - 8.0
        budget = left / (2 - k)
        task = _build_model(cfg, args, dev)
        workers = args.workers if args.workers >= 0 else None
        data = make_data_path(augment_on, images, np.zeros(n, np.int64), views, mean, std, args.batch_size, dev,
                              seed=0, workers=workers)
        times: list[float] = []
        from step_timing import TimedBatches

        timed_data = TimedBatches(data, dev, times, stop=lambda done, elapsed: len(done) >= 4 and elapsed > budget)

        with tempfile.TemporaryDirectory() as tmp:
            fit(task, timed_data, dataclasses.replace(cfg.engine, augment_on=augment_on), RunFiles.for_output(Path(tmp)),
                config_record={}, device=dev)
        timed = times[2:]  # the first steps pay for worker start-up, cuDNN autotuning and allocator warm-up
        rate = args.batch_size * len(timed) / sum(timed) if timed else None
        results[augment_on] = {"images_per_s": rate, "s_per_step": sum(timed) / len(timed) if timed else None,
                               "timed_steps": len(timed), "warmup_steps": min(2, len(times)),
                               **({"workers": getattr(data, "loader").num_workers} if augment_on == "cpu" else {})}
        rec.put(f"augment_on_{augment_on}", results[augment_on])
        del task, data
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    gpu, cpu = results.get("gpu", {}).get("images_per_s"), results.get("cpu", {}).get("images_per_s")
    if gpu and cpu:
        rec.put("ratio_gpu_over_cpu", gpu / cpu)
        rec.put("bar_5x_met", gpu / cpu >= 5.0)


# ------------------------------------------------------------------------------------------
# (b) model FLOP utilisation, each speed setting side by side
# ------------------------------------------------------------------------------------------
def _count_step_flops(task, views, dev) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    from ccli.engine import StepContext
    from ccli.engine.ddp import DistContext

    ctx = StepContext(1, 0, 1, 1, dev, DistContext())
    with FlopCounterMode(display=False) as counter:
        out = task.loss_step(task.trainable, {"views": views}, ctx)
        out["loss"].backward()
    task.trainable.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def section_mfu(args, rec: Recorder, cap: float) -> None:
    import torch

    from ccli import log
    from ccli.data.gpu_augment import BatchAugmenter
    from ccli.engine import StepContext
    from ccli.engine.ddp import DistContext
    from ccli.engine.device import autocast

    log.set_verbosity(quiet=True)
    dev = _device(args)
    start = time.perf_counter()
    cfg, views_spec, mean, std = _pretrain_setup(args, dev)
    peak = bf16_peak(torch.cuda.get_device_name(dev) if dev.type == "cuda" else None, args.peak_tflops)
    rec.put("peak", peak)
    gen = torch.Generator(device=dev).manual_seed(0)
    augmenter = BatchAugmenter(views_spec, mean, std)
    batches: dict[int, tuple] = {}
    flops: dict[int, int] = {}

    def batch_of(size: int):
        """Random uint8 images, one augmented batch of them (reused: the model-only step) and its FLOPs."""
        if size not in batches:
            images = torch.randint(0, 256, (size, 3, args.image_size, args.image_size), dtype=torch.uint8,
                                   generator=gen, device=dev)
            fixed = augmenter(images, gen)
            task = _build_model(cfg, args, dev)
            task.model.to(dev)
            flops[size] = _count_step_flops(task, fixed, dev)
            batches[size] = (images, fixed)
            rec.put("flops", {str(b): {"per_step": f, "per_image": f / b} for b, f in flops.items()}
                    | {"counted": "FlopCounterMode, forward + backward of the SimCLR loss step (matmul/conv, 2 FLOPs "
                                  "per multiply-add); augmentation, optimiser and element-wise ops excluded",
                       "backbone": args.backbone, "image_size": args.image_size})
        return batches[size]

    batch_of(args.batch_size)
    # The engine's precision: bf16 autocast on a GPU that has it; fp32 on CPU (the "bf16" rows then equal fp32).
    bf16 = torch.bfloat16 if dev.type == "cuda" and torch.cuda.is_bf16_supported() else None
    base, big = args.batch_size, args.batch_size * 4
    best = dict(amp=bf16, channels_last=True, fused=True, compile=False, augment=False, batch=base)
    variants = [
        ("fp32", dict(best, amp=None, channels_last=False, fused=False)),
        ("bf16", dict(best, channels_last=False, fused=False)),
        ("bf16+channels_last", dict(best, fused=False)),
        ("bf16+channels_last+fused_sgd", best),
        ("bf16+channels_last+fused_sgd+augment_in_step", dict(best, augment=True)),
        (f"bf16+channels_last+fused_sgd, batch {big}", dict(best, batch=big)),
        ("bf16+channels_last+fused_sgd+compile", dict(best, compile=True)),
    ]
    out = {}
    for k, (name, v) in enumerate(variants):
        remaining = cap - (time.perf_counter() - start) - 5.0
        if remaining < 3:
            out[name] = {"skipped": "section time cap reached"}
            rec.put("variants", out)
            continue
        # Eager variants share the time; compile (last) gets what is left, compilation included.
        budget = min(args.variant_seconds, remaining / (len(variants) - k)) if not v["compile"] else remaining
        images, fixed = batch_of(v["batch"])
        torch.manual_seed(0)
        task = _build_model(cfg, args, dev)
        model = task.model.to(dev)
        if v["channels_last"]:
            model = model.to(memory_format=torch.channels_last)
        params = [p for p in task.trainable.parameters() if p.requires_grad]
        fused_note = None
        try:
            opt = torch.optim.SGD(params, lr=0.3, momentum=0.9, weight_decay=1e-4, fused=v["fused"] or None)
        except (RuntimeError, TypeError) as exc:  # fused unsupported on this device / torch
            opt = torch.optim.SGD(params, lr=0.3, momentum=0.9, weight_decay=1e-4)
            fused_note = f"fused SGD unavailable ({exc}); ran foreach"
        net = task.trainable
        if v["compile"]:
            net = torch.compile(net, backend=args.compile_backend)
        ctx = StepContext(1, 0, 1, 1, dev, DistContext())
        batch_views = [t.contiguous(memory_format=torch.channels_last) if v["channels_last"] else t for t in fixed]

        def step():
            views = batch_views
            if v["augment"]:
                views = augmenter(images, gen)
                if v["channels_last"]:
                    views = [t.contiguous(memory_format=torch.channels_last) for t in views]
            with autocast(dev, v["amp"]):
                loss = task.loss_step(net, {"views": views}, ctx)["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss

        t0 = time.perf_counter()
        step()
        _sync(dev)
        first = time.perf_counter() - t0
        for _ in range(2):
            step()
        _sync(dev)
        n_steps, t0 = 0, time.perf_counter()
        loss = None
        while n_steps < args.max_variant_steps:
            loss = step()
            n_steps += 1
            if n_steps % 5 == 0:
                _sync(dev)
                if time.perf_counter() - t0 > budget - first:
                    break
        _sync(dev)
        elapsed = time.perf_counter() - t0
        per_step = elapsed / n_steps
        tflops = flops[v["batch"]] / per_step / 1e12
        out[name] = {"s_per_step": per_step, "images_per_s": v["batch"] / per_step, "timed_steps": n_steps,
                     "first_step_s": first, "achieved_tflops": tflops,
                     "mfu": tflops / peak["bf16_dense_tflops"] if peak["bf16_dense_tflops"] else None,
                     "final_loss_finite": bool(torch.isfinite(loss.detach()).item()),
                     "settings": {"autocast": str(v["amp"]) if v["amp"] else "fp32",
                                  **{x: v[x] for x in ("channels_last", "fused", "compile", "augment", "batch")},
                                  **({"compile_backend": args.compile_backend} if v["compile"] else {})},
                     **({"note": fused_note} if fused_note else {})}
        if v["compile"]:
            out[name]["compile_s"] = first  # the first call compiles
        rec.put("variants", out)
        del task, model, opt, net
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    timed = {k: x for k, x in out.items() if "s_per_step" in x and not x["settings"]["augment"]}
    if timed:
        top = max(timed, key=lambda k: timed[k]["achieved_tflops"])
        rec.put("best", {"variant": top, "mfu": timed[top]["mfu"], "achieved_tflops": timed[top]["achieved_tflops"],
                         "images_per_s": timed[top]["images_per_s"]})
    if dev.type == "cuda":
        rec.put("tf32", {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32})


# ------------------------------------------------------------------------------------------
# (c) exact kNN at N = 1M, D = 512, k = 20 with the torch backend
# ------------------------------------------------------------------------------------------
def make_unit_rows(n: int, d: int, dev, seed: int = 0, centres: int = 1000):
    """Embedding-like rows: a Gaussian mixture around `centres` centres, L2-normalised, float32 on `dev`."""
    import torch

    gen = torch.Generator(device=dev).manual_seed(seed)
    mu = torch.randn(centres, d, generator=gen, device=dev)
    which = torch.randint(0, centres, (n,), generator=gen, device=dev)
    x = mu[which].add_(torch.randn(n, d, generator=gen, device=dev), alpha=0.5)
    return x.div_(x.norm(dim=1, keepdim=True))


def check_exact(x, idx, scores, rows, k: int, dev) -> dict:
    """ccli's rows against float64 brute force: ids equal, or float64 scores equal where ids differ (ties)."""
    import torch

    x64 = x.to(dev, torch.float64)
    ids_equal = scores_equal = 0
    worst = 0.0
    chunk = 64
    for s in range(0, len(rows), chunk):
        r = rows[s : s + chunk]
        rt = torch.as_tensor(r, device=dev)
        sim = x64[rt] @ x64.T
        sim[torch.arange(len(r), device=dev), rt] = -float("inf")
        true_v, true_i = torch.topk(sim, k, dim=1)
        got_i = torch.as_tensor(idx[r], device=dev)
        got_v64 = torch.gather(sim, 1, got_i)
        ids_equal += int((got_i == true_i).all(dim=1).sum())
        # Same multiset of true scores in rank order: a tie may swap ids, never change the scores.
        scores_equal += int((torch.sort(got_v64, 1, descending=True).values == true_v).all(dim=1).sum())
        got_v = torch.as_tensor(scores[r], device=dev, dtype=torch.float64)
        worst = max(worst, float((got_v - got_v64).abs().max()))
    return {"rows_checked": int(len(rows)), "rows_ids_equal": ids_equal, "rows_scores_equal": scores_equal,
            "max_abs_score_error_of_returned_float32": worst, "reference": "float64 brute force on the same rows",
            "passed": scores_equal == len(rows) and worst < 1e-5}


def section_knn(args, rec: Recorder, cap: float) -> None:
    import numpy as np
    import torch

    from ccli.neighbors.knn import SearchParams, search

    dev = _device(args)
    start = time.perf_counter()
    n, d, k = args.knn_n, args.knn_d, args.knn_k
    t0 = time.perf_counter()
    x_dev = make_unit_rows(n, d, dev)
    x = x_dev.cpu().numpy()
    del x_dev
    rec.put("setup", {"n": n, "d": d, "k": k, "metric": "cosine", "backend": "torch", "device": str(dev),
                      "block_rows": args.knn_block_rows or "ccli default",
                      "data": "Gaussian mixture around 1,000 centres, unit rows (float32)",
                      "data_seconds": time.perf_counter() - t0})
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
    params = SearchParams(k=k, metric="cosine", backend="torch", device=str(dev), block_rows=args.knn_block_rows)
    idx = np.full((n, k), -1, dtype=np.int64)
    scores = np.zeros((n, k), dtype=np.float32)
    deadline = start + cap - max(10.0, 0.15 * cap)  # leave time for the exactness check
    t0 = time.perf_counter()
    done = 0
    for first, i, s in search(x, params, copy=False):
        idx[first : first + len(i)] = i
        scores[first : first + len(s)] = s
        done = first + len(i)
        if time.perf_counter() > deadline:
            break
    elapsed = time.perf_counter() - t0
    fig = {"rows_searched": done, "complete": done == n, "seconds": elapsed, "rows_per_s": done / elapsed,
           "seconds_for_all_rows": elapsed if done == n else elapsed * n / done,
           "seconds_for_all_rows_is_extrapolated": done != n,
           "filter_tflops_effective": 2.0 * done * n * d / elapsed / 1e12}
    if dev.type == "cuda":
        fig["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated(dev) / 2**30
        fig["peak_gpu_reserved_gib"] = torch.cuda.max_memory_reserved(dev) / 2**30
    rec.put("search", fig)
    rng = np.random.default_rng(1)
    rows = np.sort(rng.choice(done, size=min(args.knn_check_rows, done), replace=False))
    rec.put("exactness", check_exact(torch.from_numpy(x), idx, scores, rows, k, dev))


# ------------------------------------------------------------------------------------------
# (d) Fashion-MNIST whole chain with cc
# ------------------------------------------------------------------------------------------
def write_idx_standin(folder: Path, n_train: int = 600, n_test: int = 200, seed: int = 0) -> Path:
    """Tiny gzipped IDX files in Fashion-MNIST's layout (class-dependent bars), for --smoke only."""
    import numpy as np

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, count in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, count).astype(np.uint8)
        images = rng.integers(0, 60, (count, 28, 28)).astype(np.uint8)
        for i, y in enumerate(labels):
            images[i, 2 + 2 * y : 5 + 2 * y, 4:24] = 230
        with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz", "wb") as fh:
            fh.write(struct.pack(">IIII", 2051, count, 28, 28) + images.tobytes())
        with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz", "wb") as fh:
            fh.write(struct.pack(">II", 2049, count) + labels.tobytes())
    return folder


_CHAIN_CHILD = """
import json, sys, time
t0 = time.perf_counter()
sys.path.insert(0, {root!r})
from pathlib import Path
from ccli import log
log.set_verbosity(quiet=True)
from ccli.methods import registry
module = registry.load(registry.get('cc'))
config = registry.resolve_method_config(module, 'cc', 'fashion-mnist', {sets!r})
result = registry.train('cc', registry.Inputs(data={spec!r}), config, out=Path({out!r}), cache_dir=Path({cache!r}),
                        device={device!r}, force=True)
print(json.dumps({{'seconds': time.perf_counter() - t0, **{{k: float(result.scores[k]) for k in ('acc', 'nmi', 'ari')}}}}))
"""


def _run_chain(spec: str, sets: list[str], device: str, work: Path, timeout: float, without: str) -> dict:
    """One `ccli train --method cc` from images in a fresh interpreter: whole-process wall time and scores."""
    out = work / f"run-{len(list(work.glob('run-*')))}"
    code = _BLOCKER.replace("@NAMES@", repr(without)) + _CHAIN_CHILD.format(root=str(ROOT), sets=sets, spec=spec, out=str(out),
                                                                cache=str(work / "cache"), device=device)
    env = {**os.environ, "PYTHONPATH": search_path(), "CCLI_CACHE": str(work / "cache")}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc = None
    wall = time.perf_counter() - t0
    epochs = []
    metrics = out / "metrics.jsonl"
    if metrics.is_file():
        for line in metrics.read_text().splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "epoch" in r:
                epochs.append({k: r[k] for k in ("epoch", "loss", "images_per_s", "epoch_time_s", "acc", "nmi", "ari")
                               if k in r})
    result = {"wall_s": wall, "epochs_done": len(epochs), "per_epoch": epochs}
    if proc is None:
        result["error"] = f"killed at the time cap ({timeout:.0f} s)"
    elif proc.returncode != 0:
        result["error"] = (proc.stderr.strip().splitlines() or ["exit status " + str(proc.returncode)])[-1][:400]
    else:
        result.update(json.loads(proc.stdout.strip().splitlines()[-1]))
    return result


def section_fashion(args, rec: Recorder, cap: float) -> None:
    start = time.perf_counter()
    folder = Path(args.fashion).expanduser() if args.fashion else None
    with tempfile.TemporaryDirectory(prefix="gpu-suite-fashion-") as tmp:
        work = Path(tmp)
        if folder is None and args.smoke:
            folder = write_idx_standin(work / "idx")
            rec.put("data_note", "synthetic 28×28 IDX stand-in (smoke): not Fashion-MNIST")
        if folder is None:
            rec.put("skipped", "no --fashion DIR given (the four Fashion-MNIST .gz IDX files)")
            return
        missing = [f for f in FASHION_FILES if not (folder / f).is_file() and not (folder / f[:-3]).is_file()]
        if missing:
            rec.put("skipped", f"--fashion {folder} lacks {', '.join(missing)}")
            return
        from importlib.util import find_spec

        lacking = [m for m in CHAIN_MODULES if find_spec(m) is None]
        if lacking:
            rec.put("skipped", f"the chain needs {', '.join(lacking)}, not importable here (carry them: "
                               f"pip install --target {PYDEPS.relative_to(ROOT)} pyyaml h5py rich)")
            return
        dev = "cpu" if args.smoke else args.device
        spec = f"fashion-mnist:{folder}"
        base = ["eval_every=5", f"seed={args.seed}"] + (["batch_size=64"] if args.smoke else [])
        rec.put("setup", {"method": "cc", "preset": "fashion-mnist", "data": spec, "device": dev,
                          "why_cc": "best Fashion-MNIST ACC of our CPU comparison (BENCHMARKS.md, issue 5: cc 0.742, "
                                    "kmeans on SimCLR 0.699, dcacn 0.685; scan has no Fashion-MNIST figure)",
                          "sets": base, "budget_s": cap})
        if args.fashion_epochs:
            epochs, calibration = args.fashion_epochs, None
        else:
            calibration = _run_chain(spec, base + ["epochs=2"], dev, work, cap - 10, args.without)
            rec.put("calibration", calibration)
            times = [e["epoch_time_s"] for e in calibration["per_epoch"] if e.get("epoch_time_s")]
            if "error" in calibration or not times:
                return
            fixed = calibration["wall_s"] - sum(times)  # start-up, data load, final prediction
            left = cap - (time.perf_counter() - start) - 10.0
            # 15 % over the measured epoch for the cluster-score pass every 5 epochs and timing noise.
            epochs = int(max(1, min(args.fashion_max_epochs, (left - fixed * 1.2) // (times[-1] * 1.15))))
        rec.put("epochs", epochs)
        left = cap - (time.perf_counter() - start) - 3.0
        final = _run_chain(spec, base + [f"epochs={epochs}"], dev, work, left, args.without)
        rec.put("run", final)
        if "acc" in final:
            rec.put("acc", final["acc"])
            rec.put("chain_wall_s", final["wall_s"])
            rec.put("bar_acc_0_80_met", final["acc"] >= 0.80)


# ------------------------------------------------------------------------------------------
# (e) embed and neighbors: one process on one GPU vs torchrun on two
# ------------------------------------------------------------------------------------------
def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ccli_timed(args: list[str], nproc: int, work: Path, timeout: float) -> dict:
    """One ccli command in a fresh interpreter (torchrun with `nproc` > 1): whole-process wall time, stdout."""
    launcher = [sys.executable, "-m", "ccli"] if nproc == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port",
        str(_free_port()), "-m", "ccli"]
    env = {**os.environ, "PYTHONPATH": search_path(), "CCLI_CACHE": str(work / "cache")}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([*launcher, *args], capture_output=True, text=True, env=env, timeout=max(1.0, timeout))
    except subprocess.TimeoutExpired:
        return {"wall_s": time.perf_counter() - t0, "error": f"killed at the time cap ({timeout:.0f} s)"}
    out = {"wall_s": time.perf_counter() - t0}
    if proc.returncode != 0:
        out["error"] = [l for l in proc.stderr.strip().splitlines() if l.startswith("ccli:")][-1:] or \
            proc.stderr.strip().splitlines()[-1:]
        out["error"] = (out["error"] or [f"exit status {proc.returncode}"])[0][:400]
    else:
        out["path"] = proc.stdout.strip().splitlines()[-1]
    return out


def compare_artifacts(a: str, b: str) -> dict:
    """What differs between two artifacts of one kind: features' largest |difference|, neighbour rows equal."""
    import h5py
    import numpy as np

    with h5py.File(a) as fa, h5py.File(b) as fb:
        out = {"same_key": str(fa.attrs.get("key")) == str(fb.attrs.get("key"))}
        if "indices" in fa:
            ia, ib = fa["indices"][:], fb["indices"][:]
            out["rows"] = int(len(ia))
            out["rows_equal"] = int(np.all(ia == ib, axis=1).sum()) if ia.shape == ib.shape else 0
            out["max_abs_score_diff"] = float(np.abs(fa["scores"][:] - fb["scores"][:]).max()) \
                if ia.shape == ib.shape else None
        else:
            names = ["features", *(f"views/{v}" for v in fa.get("views", {}))]
            out["datasets"] = names
            out["max_abs_diff"] = max(float(np.abs(fa[n][:].astype(np.float64) - fb[n][:]).max()) for n in names)
    return out


def section_sharded(args, rec: Recorder, cap: float) -> None:
    start = time.perf_counter()
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if not args.smoke and gpus < 2:
        rec.put("skipped", f"needs at least 2 visible GPUs for torchrun --nproc_per_node 2; {gpus} visible")
        return
    device = "cpu" if args.smoke else "auto"  # auto: cuda:0 alone, cuda:LOCAL_RANK under torchrun (NCCL)
    with tempfile.TemporaryDirectory(prefix="gpu-suite-sharded-") as tmp:
        work = Path(tmp)
        folder = Path(args.fashion).expanduser() if args.fashion and not args.smoke else \
            write_idx_standin(work / "idx", n_train=args.sharded_n, n_test=0)
        spec = f"fashion-mnist:{folder}"
        rec.put("setup", {"data": spec, "synthetic": not (args.fashion and not args.smoke), "gpus_visible": gpus,
                          "backend": "gloo (CPU)" if args.smoke else "nccl", "views": "clean,weak,strong",
                          "k": args.knn_k, "backbone": args.backbone, "order": "1 process first, then torchrun"})
        left = lambda: cap - (time.perf_counter() - start) - 3.0  # noqa: E731
        pre = _ccli_timed(["pretrain", "--data", spec, "--preset", "fashion-mnist", "--backbone", args.backbone,
                           "--epochs", "1", "--set", "knn_every=0", "--device", device, "-o", str(work / "run"), "-q"],
                          1, work, left())
        rec.put("pretrain_untimed", pre)
        if "error" in pre:
            return
        stages = {"embed": ["embed", pre["path"], "--views", "clean,weak,strong", "--device", device, "--force", "-q"]}
        for stage in ("embed", "neighbors"):
            runs = {}
            for nproc in (1, 2):
                args_ = stages[stage] if stage == "embed" else [
                    "neighbors", rec.data["embed"]["one_process"]["path"], "-k", str(args.knn_k), "--device", device,
                    "--force", "-q"]
                runs["one_process" if nproc == 1 else "torchrun_2"] = _ccli_timed(
                    [*args_, "-o", str(work / f"{stage}-{nproc}.h5")], nproc, work, left())
                rec.put(stage, runs)
                if "error" in runs["one_process" if nproc == 1 else "torchrun_2"]:
                    return
            runs["speedup_2_over_1"] = runs["one_process"]["wall_s"] / runs["torchrun_2"]["wall_s"]
            runs["artifacts"] = compare_artifacts(runs["one_process"]["path"], runs["torchrun_2"]["path"])
            rec.put(stage, runs)


def _num(value, fmt: str = "{:,.0f}") -> str:
    return "—" if value is None else fmt.format(value)


def summarize(result: dict) -> str:
    """A Markdown summary of a suite JSON (what benchmarks/run.py appends to BENCHMARKS.md)."""
    m = result.get("machine", {})
    sec = result.get("sections", {})
    head = (f"GPU suite ({'smoke, CPU: harness check only' if result.get('smoke') else 'full'}): "
            f"{m.get('gpu') or 'no GPU'}; {m.get('cpu')}, {m.get('cores')} cores; torch {m.get('torch')}; "
            f"started {result.get('started_utc')}, load {m.get('load_avg_1_5_15')}")
    lines = [head, "", "| section | status | figure |", "|---|---|---|"]

    def row(name: str, text: str) -> None:
        entry = sec.get(name, {})
        status = entry.get("status", "not run")
        if entry.get("reason") and status != "ok":
            text = (text + "; " if text else "") + entry["reason"].splitlines()[-1][:120]
        lines.append(f"| {name} | {status} | {text} |")

    a = sec.get("augment", {}).get("figures", {})
    g, c = a.get("augment_on_gpu", {}).get("images_per_s"), a.get("augment_on_cpu", {}).get("images_per_s")
    row("augment", f"engine step, augment_on gpu {_num(g)} img/s vs cpu {_num(c)} img/s"
                   + (f" = {a['ratio_gpu_over_cpu']:.1f}× (bar 5×)" if a.get("ratio_gpu_over_cpu") else ""))
    f = sec.get("mfu", {}).get("figures", {})
    parts = [f"{k} {_num(v.get('images_per_s'))} img/s, MFU {_num(v.get('mfu'), '{:.1%}')}"
             for k, v in f.get("variants", {}).items() if "s_per_step" in v]
    row("mfu", "; ".join(parts))
    kn = sec.get("knn", {}).get("figures", {})
    s, e, st = kn.get("search", {}), kn.get("exactness", {}), kn.get("setup", {})
    row("knn", (f"N={_num(st.get('n'))}, D={st.get('d')}, k={st.get('k')}: {_num(s.get('seconds_for_all_rows'), '{:.1f}')} s"
                + (" (extrapolated)" if s.get("seconds_for_all_rows_is_extrapolated") else "")
                + f", peak GPU memory {_num(s.get('peak_gpu_memory_gib'), '{:.1f}')} GiB, exact on "
                  f"{e.get('rows_scores_equal')}/{e.get('rows_checked')} checked rows") if s else "")
    fa = sec.get("fashion", {}).get("figures", {})
    run = fa.get("run", {})
    row("fashion", (f"cc, {fa.get('epochs')} epochs: ACC {_num(run.get('acc'), '{:.3f}')}, NMI {_num(run.get('nmi'), '{:.3f}')}, "
                    f"ARI {_num(run.get('ari'), '{:.3f}')}, whole chain {_num(run.get('wall_s'))} s") if run else "")
    sh = sec.get("sharded", {}).get("figures", {})
    parts = [f"{stage} {_num(sh[stage]['one_process']['wall_s'], '{:.1f}')} s on 1 vs "
             f"{_num(sh[stage]['torchrun_2']['wall_s'], '{:.1f}')} s on 2 ({sh[stage]['speedup_2_over_1']:.2f}×)"
             for stage in ("embed", "neighbors") if "speedup_2_over_1" in sh.get(stage, {})]
    row("sharded", "; ".join(parts))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------
# Driver
# ------------------------------------------------------------------------------------------
RUNNERS = {"augment": section_augment, "mfu": section_mfu, "knn": section_knn, "fashion": section_fashion,
           "sharded": section_sharded}


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=None, help="JSON to write (default $OUT/gpu_suite.json or ./gpu_suite.json)")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {', '.join(SECTIONS)}")
    p.add_argument("--smoke", action="store_true", help="every section tiny on CPU (checks the harness)")
    p.add_argument("--device", default="auto", help="auto, cuda, cuda:N or cpu")
    p.add_argument("--budget", type=float, default=0.0, help=f"seconds for the whole suite (default {BUDGET_S:.0f})")
    p.add_argument("--cap", action="append", default=[], metavar="SECTION=SECONDS", help="override a section's time cap")
    p.add_argument("--fashion", default=None, help="folder with the four Fashion-MNIST IDX .gz files")
    p.add_argument("--fashion-epochs", type=int, default=0, help="skip the calibration run and train this many epochs")
    p.add_argument("--fashion-max-epochs", type=int, default=200)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--backbone", default="resnet18-cifar")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=60, help="most engine steps per augment path (time-capped too)")
    p.add_argument("--workers", type=int, default=-1, help="DataLoader workers of the CPU path (-1: ccli's default)")
    p.add_argument("--variant-seconds", type=float, default=12.0, help="timing per eager MFU variant")
    p.add_argument("--max-variant-steps", type=int, default=400)
    p.add_argument("--compile-backend", default="inductor")
    p.add_argument("--peak-tflops", type=float, default=0.0, help="bf16 dense peak, if the GPU is not in the table")
    p.add_argument("--knn-n", type=int, default=1_000_000)
    p.add_argument("--knn-d", type=int, default=512)
    p.add_argument("--knn-k", type=int, default=20)
    p.add_argument("--knn-block-rows", type=int, default=0, help="query rows per block (0: ccli's default)")
    p.add_argument("--knn-check-rows", type=int, default=512)
    p.add_argument("--sharded-n", type=int, default=20_000, help="images of the sharded section's stand-in data")
    p.add_argument("--without", default="", help="comma-separated modules to make unimportable (e.g. faiss)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-out", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-cap", type=float, default=0.0, help=argparse.SUPPRESS)
    p.add_argument("--child-launched", type=float, default=0.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.smoke:
        args.backbone, args.batch_size, args.steps, args.workers = "small_cnn", 16, 4, 1
        args.variant_seconds, args.max_variant_steps, args.compile_backend = 1.0, 6, "eager"
        args.knn_n, args.knn_d, args.knn_check_rows = 3000, 32, 64
        args.fashion_epochs = args.fashion_epochs or 1
        args.sharded_n = 600
        # Rehearse the GPU machine, which has no faiss: the torch paths must carry every section.
        args.without = args.without or "faiss"
    args.budget = args.budget or (SMOKE_BUDGET_S if args.smoke else BUDGET_S)
    unknown = set(args.sections.split(",")) - set(SECTIONS)
    if unknown:
        p.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    return args


def caps_for(args) -> dict:
    caps = dict(SMOKE_CAPS if args.smoke else CAPS)
    for item in args.cap:
        name, _, value = item.partition("=")
        if name not in caps:
            raise SystemExit(f"--cap {item}: unknown section {name!r}")
        caps[name] = float(value)
    return caps


def child_main(args) -> None:
    if args.without:
        block_imports(args.without)
    if args.smoke:
        import torch

        torch.set_num_threads(1)
    rec = Recorder(args.child_out)
    # The cap counts from the parent's launch of this process, interpreter and torch start-up included.
    cap = args.child_cap - (time.time() - args.child_launched)
    RUNNERS[args.child](args, rec, cap)


def _skips_at_once(name: str, args, result: dict) -> bool:
    """The sharded section without 2 GPUs (outside --smoke) is skipped without starting its process."""
    return name == "sharded" and not args.smoke and result["machine"].get("gpu_count", 0) < 2


def main(argv=None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    if PYDEPS.is_dir() and str(PYDEPS) not in sys.path:
        sys.path.insert(1, str(PYDEPS))
    if args.child:
        child_main(args)
        return {}
    out = args.out or (Path(os.environ["OUT"]) / "gpu_suite.json" if os.environ.get("OUT") else Path("gpu_suite.json"))
    caps = caps_for(args)
    result = {"suite": "ccli benchmarks/gpu_suite.py (issue 17)", "smoke": args.smoke,
              "started_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "argv": argv, "machine": machine_info(), "blocked_imports": args.without or None, "sections": {}}
    result["peak"] = bf16_peak(result["machine"].get("gpu"), args.peak_tflops)
    write_json(out, result)
    suite_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-suite-") as tmp:
        for name in args.sections.split(","):
            part = Path(tmp) / f"{name}.json"
            names = args.sections.split(",")
            rest = len([n for n in names[names.index(name) + 1 :] if not _skips_at_once(n, args, result)])
            cap = min(caps[name], args.budget - (time.perf_counter() - suite_start) - MIN_CAP * rest)
            if _skips_at_once(name, args, result):  # no process started: a 1-GPU machine loses nothing
                reason = f"needs at least 2 visible GPUs; {result['machine'].get('gpu_count', 0)} visible"
                result["sections"][name] = {"status": "skipped", "cap_s": 0, "wall_s": 0.0, "figures": {},
                                            "reason": reason}
                write_json(out, result)
                print(f"{name}: skipped ({reason})", file=sys.stderr, flush=True)
                continue
            if cap < MIN_CAP:
                result["sections"][name] = {"status": "skipped", "reason": f"the suite's --budget {args.budget:.0f} s is spent",
                                            "cap_s": 0, "wall_s": 0.0, "figures": {}}
                write_json(out, result)
                continue
            cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--child", name, "--child-out", str(part),
                   "--child-cap", str(cap), "--child-launched", str(time.time())]
            env = {**os.environ, "PYTHONPATH": search_path()}
            t0 = time.perf_counter()
            status, reason = "ok", None
            try:
                proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=cap + KILL_GRACE)
                if proc.returncode != 0:
                    status = "error"
                    lines = proc.stderr.strip().splitlines()
                    reason = "\n".join(lines[-6:])[-1500:] if lines else f"exit status {proc.returncode}"
            except subprocess.TimeoutExpired:
                status, reason = "timeout", f"killed at its cap ({cap:.0f} s) + {KILL_GRACE:.0f} s; figures are those taken by then"
            figures = json.loads(part.read_text()) if part.is_file() else {}
            if status == "ok" and "skipped" in figures:
                status, reason = "skipped", figures["skipped"]
            entry = {"status": status, "wall_s": time.perf_counter() - t0, "cap_s": cap, "figures": figures}
            if reason:
                entry["reason"] = reason
            result["sections"][name] = entry
            result["elapsed_s"] = time.perf_counter() - suite_start
            write_json(out, result)
            print(f"{name}: {status} in {entry['wall_s']:.0f} s" + (f" ({reason.splitlines()[-1]})" if reason else ""),
                  file=sys.stderr, flush=True)
    result["finished_utc"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    result["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    write_json(out, result)
    print(summarize(result), file=sys.stderr)
    print(out)
    return result


if __name__ == "__main__":
    main()
