"""The comparisons of issue 5: kmeans on SimCLR features, cc and dcacn, side by side in one run.

    python benchmarks/bench_train.py [--data digits] [--epochs N] [--seeds 42,43] [--ablations]
                                     [--only cc,dcacn] [--cache-dir DIR] [--json results.json]
    python benchmarks/bench_train.py --data fashion-mnist:/usr/share/datasets/fashion-mnist

Each method runs from images with the preset named after the dataset (`--preset digits`,
`--preset fashion-mnist`: the part of --data before the colon) through the library entry point
that `ccli train` uses (ccli.methods.registry.train), in this one process, one after the other,
so they share the machine state. kmeans' time includes its SimCLR pretraining and embedding
(the cache is fresh unless --cache-dir points at a warm one). --epochs overrides the training
epochs of cc and dcacn (and of kmeans' pretraining) so every method gets the same epoch
budget; wall times are printed beside the scores. --ablations adds the dcacn variants the
paper claims but never shows (spec §12): the literal row-wise cluster loss of Eq. 7 (the
digits preset uses CC's column form), no CBAM, no local crops, InfoNCE instead of DCL. The load average is printed before and after, because on a shared
machine the times mean little without it.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

VARIANTS = {
    "kmeans": ("kmeans", []),
    "cc": ("cc", []),
    "dcacn": ("dcacn", []),
}
ABLATIONS = {
    "dcacn row": ("dcacn", ["cluster_mode=row"]),
    "dcacn no-CBAM": ("dcacn", ["backbone=small_cnn"]),
    "dcacn no-local": ("dcacn", ["n_local=0"]),
    "dcacn infonce": ("dcacn", ["loss=infonce"]),
}


def machine() -> str:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return f"{platform.machine()} {model}, {cpus} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def run_variant(method: str, sets: list[str], data: str, epochs: int | None, seed: int, cache: Path,
                out: Path) -> dict:
    from ccli.methods import registry

    module = registry.load(registry.get(method))
    sets = list(sets) + [f"seed={seed}"]
    if epochs is not None and method in ("cc", "dcacn"):
        sets.append(f"epochs={epochs}")
    if method == "kmeans":
        if epochs is not None:
            sets.append("pretrain_epochs=0")  # the recipe written below carries --epochs
        # The pretraining recipe carries its own seed; without this every kmeans seed would
        # reuse one cached pretraining and only the k-means initialisation would vary.
        sets.append(f"pretrain_preset={_pretrain_recipe(data, cache, epochs, seed)}")
    config = registry.resolve_method_config(module, method, preset_name(data), sets)
    inputs = registry.Inputs(data=data)
    start = time.perf_counter()
    result = registry.train(method, inputs, config, out=out, cache_dir=cache, device="cpu", force=True)
    elapsed = time.perf_counter() - start
    return {"seconds": elapsed, **{k: result.scores[k] for k in ("acc", "nmi", "ari")}}


def preset_name(data: str) -> str:
    """The presets a dataset spec runs with: digits -> digits, fashion-mnist:DIR -> fashion-mnist."""
    return data.split(":", 1)[0]


def _pretrain_recipe(data: str, cache: Path, epochs: int | None, seed: int) -> Path:
    """The kmeans preset's pretraining recipe with this benchmark's seed (and epoch budget, if any).

    The kmeans preset's own pretrain_epochs (the equal-time budget on Fashion-MNIST) still
    applies on top of the recipe, unless --epochs replaces both.
    """
    import yaml

    from ccli.config import preset_path

    kmeans = yaml.safe_load(preset_path("kmeans", preset_name(data)).read_text())
    name = kmeans["pretrain_preset"]
    recipe = yaml.safe_load(preset_path("pretrain", name).read_text())
    recipe["seed"] = seed
    if epochs is not None:
        recipe["epochs"] = epochs
    path = cache / f"{name}-{epochs}-{seed}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digits")
    parser.add_argument("--epochs", type=int, default=None, help="epoch budget for every method (default: presets')")
    parser.add_argument("--seeds", default="42")
    parser.add_argument("--ablations", action="store_true")
    parser.add_argument("--only", default="", help="comma-separated variant names to run")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from ccli import log

    log.set_verbosity(quiet=True)
    variants = dict(VARIANTS, **(ABLATIONS if args.ablations else {}))
    if args.only:
        variants = {k: v for k, v in variants.items() if k in args.only.split(",")}
    seeds = [int(s) for s in args.seeds.split(",")]
    cache = args.cache_dir or Path(tempfile.mkdtemp(prefix="bench-train-"))
    host = machine()  # before any preset changes torch's thread count
    print(f"machine: {host}", file=sys.stderr)
    print(f"load average before: {os.getloadavg()}", file=sys.stderr)
    rows = []
    for name, (method, sets) in variants.items():
        for seed in seeds:
            out = cache / "bench" / f"{name.replace(' ', '_')}-{seed}"
            result = run_variant(method, sets, args.data, args.epochs, seed, cache, out)
            rows.append({"variant": name, "seed": seed, **result, "load": os.getloadavg()[0],
                         "load_5": os.getloadavg()[1]})
            print(f"{name:>16} seed {seed}: ACC {result['acc']:.4f} NMI {result['nmi']:.4f} "
                  f"ARI {result['ari']:.4f} in {result['seconds']:.0f} s (load {rows[-1]['load']:.1f})",
                  file=sys.stderr, flush=True)
    print(f"load average after: {os.getloadavg()}", file=sys.stderr)
    budget = f"{args.epochs} epochs each" if args.epochs else f"each method's {preset_name(args.data)} preset"
    print(f"\n{args.data}, {budget}, seeds {args.seeds}; machine: {host}\n")
    print("| variant | seed | ACC | NMI | ARI | wall s | load (1 / 5 min, at the end) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['seed']} | {r['acc']:.3f} | {r['nmi']:.3f} | {r['ari']:.3f} | "
              f"{r['seconds']:.0f} | {r['load']:.1f} / {r['load_5']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps({"machine": host, "budget": budget, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
