"""`ccli pretrain`'s runner: the pretext task on the engine, in a run folder that never loses data.

The run folder follows ccli.methods.runfolder, as `ccli train`'s does: the same key continues
(a finished run is a cache hit, an unfinished one resumes automatically from its checkpoint),
another command's or another key's folder is refused unless `force`, and a key lock makes a
second identical `ccli pretrain` wait for the first and reuse its checkpoint.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ccli import log
from ccli.errors import BadInput
from ccli.methods.pretrain.config import PretrainConfig, effective


@dataclass
class PretrainResult:
    checkpoint: Path
    cached: bool
    history: list = field(default_factory=list)


def config_record(cfg: PretrainConfig, data_spec: str, split: str, fingerprint: str) -> dict[str, Any]:
    """The dict recorded in the checkpoint and compared on resume (config + data identity)."""
    record = dataclasses.asdict(cfg)
    record.update(data=data_spec, split=split, data_fingerprint=fingerprint)
    return record


def run_key(record: dict[str, Any]) -> str:
    """Content key of a pretraining run: everything except runtime-only settings."""
    from ccli.config import flat_config
    from ccli.engine.loop import is_runtime_key
    from ccli.store import content_key

    return content_key("pretrain", {k: v for k, v in flat_config(record).items() if not is_runtime_key(k)})


def run_folder_for(out: Optional[Path], cache_dir, key: str):
    """(RunFiles, RunFolder): -o DIR, -o FILE.pt (files named after its stem), or the cache's runs/pretrain-<key>/."""
    from ccli.engine.loop import RunFiles
    from ccli.methods.runfolder import MARKER, RunFolder
    from ccli.store import cache_root

    if out is None:
        out = cache_root(cache_dir) / "runs" / f"pretrain-{key}"
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir() and out.suffix != ".pt":
        raise BadInput(f"--out {out} exists and is not a folder or a .pt checkpoint path.")
    files = RunFiles.for_output(out)
    if out.suffix == ".pt":
        marker = out.parent / f"{out.with_suffix('').name}.{MARKER}"
        return files, RunFolder(out.parent, marker, (out.name, files.metrics.name, files.config.name))
    return files, RunFolder(out, out / MARKER, ("checkpoint.pt", "metrics.jsonl", "config.yaml"))


def _lock_base(folder) -> Path:
    """key_lock's path for a run: a hidden `.run.json.lock` beside the marker."""
    return folder.marker.with_name(f".{folder.marker.name}")


def _matching_state(path: Path, record: dict[str, Any]) -> dict | None:
    """The checkpoint at `path` if it can be read and was made with this config, else None."""
    from ccli.engine.checkpoint import load_checkpoint
    from ccli.engine.loop import config_differences

    if not path.is_file():
        return None
    try:
        state = load_checkpoint(path)
    except BadInput:
        log.warn(f"{path} cannot be read; pretraining starts from scratch.")
        return None
    return None if config_differences(state.get("config", {}), record) else state


def _is_complete(path: Path, record: dict[str, Any]) -> bool:
    state = _matching_state(path, record)
    return bool(state and state.get("complete"))


def _resumable(path: Path, record: dict[str, Any]) -> bool:
    return _matching_state(path, record) is not None


def pretrain(cfg: PretrainConfig, data_spec: str, split: str = "all", out: Optional[Path] = None, cache_dir=None,
             force: bool = False, announce=None) -> PretrainResult:
    """Train a representation and return its checkpoint (a cache hit when the same run is complete).

    `announce` (a no-argument callable, e.g. the note on what an automatic preset chose) runs once
    every check has passed, so a refused command prints its one error sentence and nothing else.
    """
    from ccli.engine.ddp import init_distributed, shutdown
    from ccli.models import backbone_entry
    from ccli.threads import limit_threads

    cfg = effective(cfg)
    if cfg.backbone != "auto":
        backbone_entry(cfg.backbone)  # unknown names fail before any data is read
    if cfg.engine.epochs < 1:
        raise BadInput(f"epochs={cfg.engine.epochs} must be at least 1.")
    if cfg.engine.batch_size < 2:
        raise BadInput(f"batch_size={cfg.engine.batch_size} is too small: contrastive losses need at least 2 images.")
    dist, device = init_distributed(cfg.device)
    if cfg.engine.batch_size % dist.world_size:
        raise BadInput(f"batch_size={cfg.engine.batch_size} is not divisible by the {dist.world_size} processes.")
    finished = False
    try:
        with limit_threads(cfg.engine.threads, device):
            result = _pretrain(cfg, data_spec, split, out, cache_dir, force, dist, device, announce)
        finished = True
        return result
    finally:
        if dist.distributed:
            shutdown(finished)


def _pretrain(cfg, data_spec, split, out, cache_dir, force, dist, device, announce=None) -> PretrainResult:
    from ccli.data.sources import load_dataset
    from ccli.methods import runfolder
    from ccli.methods.pretrain.models import build_views
    from ccli.models import backbone_entry
    from ccli.store import key_lock

    engine = cfg.engine
    dataset = load_dataset(data_spec, split=split, image_size=cfg.image_size)
    n, h, w, c = dataset.images.shape
    if h != w:
        raise BadInput(f"--data {data_spec} has {h}×{w} images; square images are needed (set image_size=…).")
    if cfg.backbone == "auto":
        cfg = dataclasses.replace(cfg, backbone="small_cnn" if h < 32 else "resnet18")
    backbone_entry(cfg.backbone, c, h)
    if engine.batch_size > n:
        raise BadInput(f"batch_size={engine.batch_size} is larger than the dataset ({n:,} images in {data_spec}).")
    if cfg.method == "moby" and cfg.queue_size < engine.batch_size:
        raise BadInput(f"queue_size={cfg.queue_size} must be at least batch_size={engine.batch_size}.")
    views = build_views(cfg, h, c)  # bad augmentation settings fail here, before anything is written

    record = config_record(cfg, dataset.spec, split, dataset.fingerprint)
    key = run_key(record)
    files, folder = run_folder_for(out, cache_dir, key)
    claim = runfolder.check_claim(folder, "pretrain", key, force)
    if announce is not None:
        announce()
    if claim == "same" and not force and _is_complete(files.checkpoint, record):
        log.info(f"cache hit: {files.checkpoint} already holds this completed run (--force retrains).")
        return PretrainResult(files.checkpoint, True)
    if not dist.is_main:
        return _train(cfg, dataset, views, record, files, _resumable(files.checkpoint, record) and not force, dist,
                      device)
    folder.folder.mkdir(parents=True, exist_ok=True)
    with key_lock(_lock_base(folder)):
        # A second identical command waited here while the first trained: reuse its result.
        if not force and _is_complete(files.checkpoint, record):
            log.info(f"cache hit: {files.checkpoint} was completed by another process meanwhile.")
            return PretrainResult(files.checkpoint, True)
        resume = not force and runfolder.check_claim(folder, "pretrain", key, force) == "same" \
            and _resumable(files.checkpoint, record)
        if not resume:
            runfolder.clear(folder)
        runfolder.write_marker(folder, "pretrain", key, method=cfg.method)
        _write_config(files.config, record)
        return _train(cfg, dataset, views, record, files, resume, dist, device)


def _train(cfg, dataset, views, record, files, resume: bool, dist, device) -> PretrainResult:
    import torch

    from ccli.data.augment import channel_stats
    from ccli.engine import KnnMonitor, fit, make_data_path
    from ccli.methods.pretrain.models import build_task
    from ccli.models import build_backbone

    engine = cfg.engine
    n, h, w, c = dataset.images.shape
    mean, std = channel_stats(dataset.images, seed=cfg.seed)
    torch.manual_seed(cfg.seed)
    backbone = build_backbone(cfg.backbone, c, h)
    task, bb_prefix, proj_prefix = build_task(cfg, backbone, 2, cfg.multicrop_local)
    data = make_data_path(engine.augment_on, dataset.images, dataset.labels, views, mean, std, engine.batch_size,
                          device, cfg.seed, dist, drop_last=True, workers=engine.workers)
    monitor = None
    if dataset.has_labels and engine.knn_every > 0:
        mon = KnnMonitor(dataset.images, dataset.labels, mean, std, engine.knn_samples, engine.knn_k, seed=cfg.seed)
        monitor = mon if mon.usable else None
    extra = {
        "kind": "pretrain",
        "method": cfg.method,
        "backbone": {"name": cfg.backbone, "in_channels": c, "image_size": h, "out_dim": int(backbone.out_dim)},
        "data": {"spec": dataset.spec, "split": record["split"], "fingerprint": dataset.fingerprint, "num_images": n,
                 "num_classes": dataset.num_classes},
        "normalization": {"mean": mean, "std": std},
        "backbone_prefix": bb_prefix,
        "projector_prefix": proj_prefix,
        "projector": {"in_dim": int(backbone.out_dim), "hidden": cfg.proj_hidden or (
            backbone.out_dim if cfg.method == "simclr" else 4096), "out_dim": cfg.proj_dim, "bn": bool(cfg.proj_bn)},
    }
    log.info(f"pretraining {cfg.method} / {cfg.backbone} on {dataset.spec} ({n:,} images {h}×{w}×{c}) on {device}, "
             f"{engine.epochs} epochs × {len(data)} steps")
    result = fit(task, data, engine, files, config_record=record, seed=cfg.seed, checkpoint_extra=extra,
                 resume=resume, monitor=monitor, dist=dist, device=device)
    return PretrainResult(result.checkpoint, False, result.history)


def _write_config(path: Path, record: dict[str, Any]) -> None:
    import yaml

    from ccli.store.artifact import _plain

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(_plain(record), sort_keys=True))
