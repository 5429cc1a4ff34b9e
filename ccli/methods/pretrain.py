"""Representation learning (`ccli pretrain`) and feature extraction (`ccli embed`).

Methods
-------
- ``simclr``: backbone → projector MLP, NT-Xent over two views (or multi-crop: global–global
  and global–local pairs, dcacn.md §5.5). Temperature 0.5 by default (CC; SCAN/GCC use 0.1).
- ``moby``: the scan+ stage-1 model (scanplus.md §4): online backbone → projector → predictor,
  target backbone → projector updated as an EMA with momentum rising 0.996 → 1 per step
  (Eq. 8), two FIFO queues of target keys (Q_a of past h_a, Q_b of past h_b; K = 4096), and the
  symmetric InfoNCE of Eq. 9–10 at τ = 0.2 with queue negatives only.

Library entry points (what the CLI and other methods call)
-----------------------------------------------------------
- `PretrainConfig` (flat dataclass; the engine fields of `EngineConfig` plus the method's own).
- `pretrain(config, data_spec, split, out, cache_dir, resume, force) -> PretrainResult`
- `load_pretrained(path, expect_backbone=None) -> Pretrained` (backbone, projector, info)
- `embed(checkpoint, data_spec, …) -> (features path, cache hit)`

Checkpoint (a `ccli-checkpoint`, see ccli.engine.checkpoint)
------------------------------------------------------------
Besides the engine's keys (epoch, step, complete, config, model, optimizer, history) it holds
``kind: "pretrain"``, ``method``, ``backbone`` {name, in_channels, image_size, out_dim},
``data`` {spec, split, fingerprint, num_images, num_classes}, ``normalization`` {mean, std},
and ``backbone_prefix`` / ``projector_prefix``: where the backbone's and projector's weights
sit in ``model`` (``backbone.``/``projector.`` for simclr, ``online.backbone.``/
``online.projector.`` for moby).

Features artifact written by `embed`
------------------------------------
- ``features [N, D]`` float32 (or float16): the clean view (eval transform: the image at the
  checkpoint's size, normalised), **raw, not L2-normalised**; root attr ``normalized = False``.
  Consumers that want cosine geometry normalise rows themselves.
- ``labels [N]`` int64 (−1 unknown), ``index [N]`` int64 (row in the dataset split).
- ``views/<name>`` for each augmented view asked for with ``--views`` (``weak``, ``strong``),
  same shape and dtype as ``features``. With ``--draws 1`` the name is the view's name
  (``views/weak``); with ``--draws N > 1`` each draw is ``views/<name>_<d>`` for d = 0..N−1
  (``views/weak_0``, ``views/weak_1``…). The ``views`` group carries attrs ``names`` (JSON list of
  the dataset names in order) and ``draws``. ``clean`` in ``--views`` is the ``features`` dataset.
- root attrs: ``layer`` (backbone | projector), ``normalized``, ``checkpoint`` (path),
  ``checkpoint_identity`` (content hash), ``backbone``, ``data_spec``, ``split``.
- weak = flip + 12.5% reflect-shift (FixMatch, scan+ β); strong = weak + RandAugment(4 ops,
  SCAN's list) + Cutout (scan+ α). Both flip with the checkpoint's pretraining ``flip_p``, so
  a digits model (flip_p 0) is not shown mirrored digits. Draw d of view v for rows of a block is seeded by
  (seed, v, d, block start), so a re-run reproduces every view.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ccli import log
from ccli.config import PRETRAIN_METHODS
from ccli.errors import BadInput, CcliError

METHODS = PRETRAIN_METHODS  # one list: the preset layout (presets/<method>/) knows the same names
AUGMENTS = ("auto", "simclr", "scanplus", "simclr+ra")


@dataclass
class PretrainConfig:
    """Every `--set` key of `ccli pretrain`; None means "the method's default" (see `effective`)."""

    method: str = "simclr"
    backbone: str = "auto"  # auto: small_cnn below 32 px, resnet18 (stem by size) from 32 px
    image_size: Optional[int] = None  # None: the dataset's native size
    # engine
    epochs: int = 100
    batch_size: int = 256
    optimizer: str = "sgd"
    lr: float = 0.05
    weight_decay: float = 1e-4
    momentum: float = 0.9
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    final_lr: float = 0.0
    grad_clip: float = 0.0
    precision: str = "auto"
    channels_last: bool = True
    compile: bool = False
    seed: int = 0
    device: str = "auto"
    knn_every: int = 1
    knn_samples: int = 5000
    knn_k: int = 20
    threads: int = 0  # torch intra-op threads on CPU; 0 keeps torch's default
    workers: int = -1  # DataLoader workers for augment_on=cpu; -1 = cores − 1 (≤ 8)
    augment_on: str = "gpu"  # gpu: batched on the training device; cpu: per-sample in workers
    # augmentation
    augment: str = "auto"  # auto (simclr for simclr, scanplus for moby) | simclr | scanplus | simclr+ra
    crop_scale: tuple[float, float] = (0.2, 1.0)
    flip_p: float = 0.5
    jitter_strength: float = 1.0
    intensity_p: float = 0.8  # grayscale data only: probability of the intensity jitter
    intensity_scale: tuple[float, float] = (0.5, 1.5)
    intensity_gamma: tuple[float, float] = (0.5, 2.0)
    randaug_n: int = 4
    cutout: Optional[int] = None  # None: 16 @ 32 px, 32 @ 96 px, 75 @ 224 px, size/3 otherwise
    multicrop_local: int = 0  # local crops per image (0: two views only)
    multicrop_local_size: Optional[int] = None  # None: 96/224 of the image size
    multicrop_global_scale: tuple[float, float] = (0.4, 1.0)
    multicrop_local_scale: tuple[float, float] = (0.05, 0.4)
    # heads and loss
    temperature: Optional[float] = None  # None: 0.5 simclr, 0.2 moby
    proj_hidden: Optional[int] = None  # None: backbone width (simclr), 4096 (moby)
    proj_dim: Optional[int] = None  # None: 128 (simclr), 256 (moby)
    proj_bn: Optional[bool] = None  # None: False (simclr), True (moby)
    pred_hidden: int = 4096
    ema_base: float = 0.996
    queue_size: int = 4096
    queue_mode: str = "two"  # two (Q_a, Q_b as MoBY) | single (one queue of h_a)


def effective(config: PretrainConfig) -> PretrainConfig:
    """The config with every method-dependent default filled in (this is what gets recorded)."""
    if config.method not in METHODS:
        raise BadInput(f"--method {config.method} is not a pretraining method (available: {', '.join(METHODS)}).")
    if config.augment not in AUGMENTS:
        raise BadInput(f"augment={config.augment} is not one of {', '.join(AUGMENTS)}.")
    if config.augment_on not in ("cpu", "gpu"):
        raise BadInput(f"--augment-on {config.augment_on} must be cpu or gpu.")
    if config.queue_mode not in ("two", "single"):
        raise BadInput(f"queue_mode={config.queue_mode} must be two or single.")
    simclr = config.method == "simclr"
    return dataclasses.replace(
        config,
        temperature=config.temperature if config.temperature is not None else (0.5 if simclr else 0.2),
        proj_dim=config.proj_dim or (128 if simclr else 256),
        proj_bn=config.proj_bn if config.proj_bn is not None else (not simclr),
        augment=config.augment if config.augment != "auto" else ("simclr" if simclr else "scanplus"),
    )


# ------------------------------------------------------------------------------------------
# Models
# ------------------------------------------------------------------------------------------
def build_heads(cfg: PretrainConfig, in_dim: int):
    """(projector, predictor or None) for an effective config."""
    from ccli.models.heads import MLP

    hidden = cfg.proj_hidden or (in_dim if cfg.method == "simclr" else 4096)
    projector = MLP(in_dim, hidden, cfg.proj_dim, layers=2, batch_norm=bool(cfg.proj_bn))
    predictor = None
    if cfg.method == "moby":
        predictor = MLP(cfg.proj_dim, cfg.pred_hidden, cfg.proj_dim, layers=2, batch_norm=True)
    return projector, predictor


def build_views(cfg: PretrainConfig, size: int, channels: int):
    from ccli.data import augment as A

    if cfg.multicrop_local > 0:
        if cfg.method != "simclr":
            raise BadInput("multi-crop (--multi-crop / multicrop_local) is only available with --method simclr.")
        return A.multicrop_views(size, channels, 2, cfg.multicrop_local, cfg.multicrop_local_size,
                                 cfg.multicrop_global_scale, cfg.multicrop_local_scale, cfg.jitter_strength)
    if cfg.augment == "scanplus":
        views = [dataclasses.replace(v, flip_p=cfg.flip_p)
                 for v in A.scanplus_views(size, cfg.randaug_n, cfg.cutout, cfg.crop_scale)]
    else:
        if channels == 1:
            base = A.grayscale_simclr_view(size, cfg.jitter_strength, cfg.crop_scale, cfg.intensity_p,
                                           cfg.intensity_scale, cfg.intensity_gamma)
        else:
            base = A.simclr_view(size, channels, cfg.jitter_strength, cfg.crop_scale)
        views = [dataclasses.replace(base, flip_p=cfg.flip_p)] * 2
        if cfg.augment == "simclr+ra":
            views = [dataclasses.replace(v, randaug_n=cfg.randaug_n) for v in views]
    return views


def build_task(cfg: PretrainConfig, backbone, n_global: int = 2, n_local: int = 0):
    """The engine Task for an effective config; returns (task, backbone_prefix, projector_prefix)."""
    import torch

    from ccli.engine import Task
    from ccli.engine.ddp import all_gather_cat
    from ccli.losses.moby import ema_momentum, moby_loss
    from ccli.losses.nt_xent import multicrop_pairs, nt_xent, nt_xent_multi

    from ccli.models.contrastive import MoBYModel, MultiViewNet

    projector, predictor = build_heads(cfg, backbone.out_dim)
    tau = float(cfg.temperature)

    if cfg.method == "simclr":
        model = MultiViewNet(backbone, projector)
        pairs = multicrop_pairs(n_global, n_local)

        def loss_step(net, batch, ctx):
            z = net(batch["views"])
            return {"loss": nt_xent(z[0], z[1], tau) if len(z) == 2 else nt_xent_multi(z, pairs, tau)}

        def embed(x):
            return model.backbone(x)

        return Task(model=model, trainable=model, loss_step=loss_step, embed=embed), "backbone.", "projector."

    model = MoBYModel(backbone, projector, predictor, cfg.queue_size, cfg.proj_dim, cfg.queue_mode == "two")

    def loss_step(net, batch, ctx):
        u_a, u_b = batch["views"][0], batch["views"][1]
        l_a, l_b = net([u_a, u_b])
        h_a, h_b = model.keys([u_a, u_b])
        q_a = model.queue_a.clone()
        q_b = model.queue_b.clone() if model.two_queues else q_a
        loss = moby_loss(l_a, l_b, h_a, h_b, q_a, q_b, tau)
        # Keys join the queues after the loss (they are this step's positives, not negatives).
        model.enqueue(all_gather_cat(h_a, ctx.dist), all_gather_cat(h_b, ctx.dist))
        return {"loss": loss}

    def after_step(ctx):
        model.ema_update(ema_momentum(ctx.step, ctx.total_steps, cfg.ema_base))

    def embed(x):
        return model.online.backbone(x)

    return (Task(model=model, trainable=model.online, loss_step=loss_step, after_step=after_step, embed=embed),
            "online.backbone.", "online.projector.")


# ------------------------------------------------------------------------------------------
# Pretraining
# ------------------------------------------------------------------------------------------
@dataclass
class PretrainResult:
    checkpoint: Path
    cached: bool
    history: list = field(default_factory=list)


def config_record(cfg: PretrainConfig, data_spec: str, split: str, fingerprint: str) -> dict[str, Any]:
    """The flat dict recorded in the checkpoint and compared on --resume (config + data identity)."""
    record = dataclasses.asdict(cfg)
    record.update(data=data_spec, split=split, data_fingerprint=fingerprint)
    return record


def run_key(record: dict[str, Any]) -> str:
    """Content key of a pretraining run: everything except runtime-only settings."""
    from ccli.engine.loop import RUNTIME_KEYS
    from ccli.store import content_key

    return content_key("pretrain", {k: v for k, v in record.items() if k not in RUNTIME_KEYS})


def run_files_for(out: Optional[Path], cache_dir, key: str):
    from ccli.engine.loop import RunFiles
    from ccli.store import cache_root

    if out is None:
        return RunFiles.for_output(cache_root(cache_dir) / "runs" / f"pretrain-{key}")
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir() and out.suffix != ".pt":
        raise BadInput(f"--out {out} exists and is not a folder or a .pt checkpoint path.")
    return RunFiles.for_output(out)


def _is_complete(path: Path, record: dict[str, Any]) -> bool:
    from ccli.engine.checkpoint import load_checkpoint
    from ccli.engine.loop import config_differences

    if not path.is_file():
        return False
    try:
        state = load_checkpoint(path)
    except BadInput:
        return False
    return bool(state.get("complete")) and not config_differences(state.get("config", {}), record)


def pretrain(cfg: PretrainConfig, data_spec: str, split: str = "all", out: Optional[Path] = None, cache_dir=None,
             resume: bool = False, force: bool = False) -> PretrainResult:
    """Train a representation and return its checkpoint (a cache hit when the same run is complete)."""
    import torch

    from ccli.engine.ddp import init_distributed
    from ccli.models import backbone_entry

    cfg = effective(cfg)
    if cfg.backbone != "auto":
        backbone_entry(cfg.backbone)  # unknown names fail before any data is read
    if cfg.batch_size < 2:
        raise BadInput(f"--batch-size {cfg.batch_size} is too small: contrastive losses need at least 2 images.")
    dist, device = init_distributed(cfg.device)
    if cfg.batch_size % dist.world_size:
        raise BadInput(f"--batch-size {cfg.batch_size} is not divisible by the {dist.world_size} processes.")
    threads = torch.get_num_threads()
    if device.type == "cpu" and cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    try:
        return _pretrain(cfg, data_spec, split, out, cache_dir, resume, force, dist, device)
    finally:
        torch.set_num_threads(threads)
        if dist.distributed:
            from ccli.engine.ddp import shutdown

            shutdown()


def _pretrain(cfg, data_spec, split, out, cache_dir, resume, force, dist, device) -> PretrainResult:
    import torch

    from ccli.data.augment import channel_stats
    from ccli.data.sources import load_dataset
    from ccli.engine import EngineConfig, KnnMonitor, fit, make_data_path
    from ccli.models import backbone_entry, build_backbone

    dataset = load_dataset(data_spec, split=split, image_size=cfg.image_size)
    n, h, w, c = dataset.images.shape
    if h != w:
        raise BadInput(f"--data {data_spec} has {h}×{w} images; square images are needed (set image_size=…).")
    if cfg.backbone == "auto":
        cfg = dataclasses.replace(cfg, backbone="small_cnn" if h < 32 else "resnet18")
    backbone_entry(cfg.backbone, c, h)
    if cfg.batch_size > n:
        raise BadInput(f"--batch-size {cfg.batch_size} is larger than the dataset ({n:,} images in {data_spec}).")
    if cfg.method == "moby" and cfg.queue_size < cfg.batch_size:
        raise BadInput(f"queue_size={cfg.queue_size} must be at least --batch-size {cfg.batch_size}.")

    record = config_record(cfg, dataset.spec, split, dataset.fingerprint)
    key = run_key(record)
    files = run_files_for(out, cache_dir, key)
    if resume and not files.checkpoint.is_file():
        raise BadInput(f"--resume: there is no checkpoint at {files.checkpoint} to resume from.")
    if resume:
        from ccli.engine.loop import check_resume

        check_resume(files.checkpoint, record)  # before anything is written or logged
    if not resume and not force and _is_complete(files.checkpoint, record):
        log.info(f"cache hit: {files.checkpoint} already holds this completed run (use --force to retrain).")
        return PretrainResult(files.checkpoint, True)
    if not resume and files.checkpoint.is_file():
        log.warn(f"{files.checkpoint} exists and will be overwritten (use --resume to continue it).")

    mean, std = channel_stats(dataset.images, seed=cfg.seed)
    views = build_views(cfg, h, c)
    torch.manual_seed(cfg.seed)
    backbone = build_backbone(cfg.backbone, c, h)
    task, bb_prefix, proj_prefix = build_task(cfg, backbone, 2, cfg.multicrop_local)
    data = make_data_path(cfg.augment_on, dataset.images, dataset.labels, views, mean, std, cfg.batch_size, device,
                          cfg.seed, dist, drop_last=True, workers=cfg.workers)
    monitor = None
    if dataset.has_labels and cfg.knn_every > 0:
        mon = KnnMonitor(dataset.images, dataset.labels, mean, std, cfg.knn_samples, cfg.knn_k, seed=cfg.seed)
        monitor = mon if mon.usable else None
    extra = {
        "kind": "pretrain",
        "method": cfg.method,
        "backbone": {"name": cfg.backbone, "in_channels": c, "image_size": h, "out_dim": int(backbone.out_dim)},
        "data": {"spec": dataset.spec, "split": split, "fingerprint": dataset.fingerprint, "num_images": n,
                 "num_classes": dataset.num_classes},
        "normalization": {"mean": mean, "std": std},
        "backbone_prefix": bb_prefix,
        "projector_prefix": proj_prefix,
        "projector": {"in_dim": int(backbone.out_dim), "hidden": cfg.proj_hidden or (
            backbone.out_dim if cfg.method == "simclr" else 4096), "out_dim": cfg.proj_dim, "bn": bool(cfg.proj_bn)},
    }
    if dist.is_main:
        _write_config(files.config, record)
    log.info(f"pretraining {cfg.method} / {cfg.backbone} on {dataset.spec} ({n:,} images {h}×{w}×{c}) on {device}, "
             f"{cfg.epochs} epochs × {len(data)} steps")
    result = fit(task, data, EngineConfig.from_config(cfg), files, config_record=record, checkpoint_extra=extra,
                 resume=resume, monitor=monitor, dist=dist, device=device)
    return PretrainResult(result.checkpoint, False, result.history)


def _write_config(path: Path, record: dict[str, Any]) -> None:
    import yaml

    from ccli.store.artifact import _plain

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(_plain(record), sort_keys=True))


# ------------------------------------------------------------------------------------------
# Loading a pretrained checkpoint
# ------------------------------------------------------------------------------------------
@dataclass
class Pretrained:
    """A pretrained backbone (eval mode, CPU) with its projector and the checkpoint's metadata."""

    backbone: Any
    projector: Any
    info: dict[str, Any]
    path: Path

    @property
    def image_size(self) -> int:
        return int(self.info["backbone"]["image_size"])

    @property
    def in_channels(self) -> int:
        return int(self.info["backbone"]["in_channels"])

    @property
    def mean(self) -> list[float]:
        return list(self.info["normalization"]["mean"])

    @property
    def std(self) -> list[float]:
        return list(self.info["normalization"]["std"])


def load_pretrained(path, expect_backbone: Optional[str] = None, what: str = "checkpoint") -> Pretrained:
    """Rebuild the backbone and projector of a `ccli pretrain` checkpoint, or raise BadInput."""
    from ccli.engine.checkpoint import load_checkpoint
    from ccli.models import build_backbone
    from ccli.models.heads import MLP

    path = Path(path)
    state = load_checkpoint(path, what)
    if state.get("kind") != "pretrain" or "backbone" not in state or "model" not in state:
        raise BadInput(f"{what} {path} is not a `ccli pretrain` checkpoint.")
    bb = state["backbone"]
    if expect_backbone is not None and bb.get("name") != expect_backbone:
        raise BadInput(f"{what} {path} holds a {bb.get('name')} backbone, but {expect_backbone} is needed here.")
    try:
        backbone = build_backbone(bb["name"], int(bb["in_channels"]), int(bb["image_size"]))
    except BadInput as exc:
        raise BadInput(f"{what} {path}: {exc}") from exc
    weights = state["model"]
    prefix = state.get("backbone_prefix", "backbone.")
    sub = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
    try:
        backbone.load_state_dict(sub, strict=True)
    except RuntimeError as exc:
        raise BadInput(f"{what} {path} does not hold a {bb['name']} backbone (its weights do not fit).") from exc
    projector = None
    pinfo = state.get("projector")
    if pinfo:
        projector = MLP(int(pinfo["in_dim"]), int(pinfo["hidden"]), int(pinfo["out_dim"]), 2, bool(pinfo["bn"]))
        pprefix = state.get("projector_prefix", "projector.")
        psub = {k[len(pprefix):]: v for k, v in weights.items() if k.startswith(pprefix)}
        try:
            projector.load_state_dict(psub, strict=True)
        except RuntimeError as exc:
            raise BadInput(f"{what} {path} has a projector whose weights do not fit its description.") from exc
        projector.eval()
    backbone.eval()
    info = {k: v for k, v in state.items() if k not in ("model", "optimizer")}
    return Pretrained(backbone, projector, info, path)


# ------------------------------------------------------------------------------------------
# Embedding
# ------------------------------------------------------------------------------------------
EMBED_VIEWS = ("clean", "weak", "strong")


def parse_views(text: str) -> list[str]:
    names = [v.strip() for v in (text or "clean").split(",") if v.strip()]
    bad = [v for v in names if v not in EMBED_VIEWS]
    if bad:
        raise BadInput(f"--views {text}: '{bad[0]}' is not a view (valid: {', '.join(EMBED_VIEWS)}).")
    if len(set(names)) != len(names):
        raise BadInput(f"--views {text} names a view twice.")
    return names


def view_dataset_names(views: list[str], draws: int) -> list[tuple[str, str, int]]:
    """(dataset name, view, draw) for every augmented view stored under views/."""
    out = []
    for v in views:
        if v == "clean":
            continue
        if draws == 1:
            out.append((f"views/{v}", v, 0))
        else:
            out.extend((f"views/{v}_{d}", v, d) for d in range(draws))
    return out


def embed(checkpoint, data_spec: Optional[str] = None, split: Optional[str] = None, layer: str = "projector",
          views: str = "clean", draws: int = 1, batch_size: int = 512, device: str = "auto", seed: int = 0,
          out: Optional[Path] = None, cache_dir=None, force: bool = False, dtype: str = "float32",
          cutout: Optional[int] = None) -> tuple[Path, bool]:
    """Write (or find in the cache) the features artifact of a checkpoint on a dataset; see module doc."""
    import torch

    from ccli.data.sources import load_dataset
    from ccli.engine.checkpoint import file_identity
    from ccli.engine.datapath import mix_seed
    from ccli.engine.device import autocast, autocast_dtype, resolve_device
    from ccli.store import ArtifactWriter, cache_root, content_key, get_or_compute, output_path

    if layer not in ("backbone", "projector"):
        raise BadInput(f"--layer {layer} must be backbone or projector.")
    if draws < 1:
        raise BadInput(f"--draws {draws} must be at least 1.")
    if batch_size < 1:
        raise BadInput(f"--batch-size {batch_size} must be at least 1.")
    if dtype not in ("float32", "float16"):
        raise BadInput(f"--dtype {dtype} must be float32 or float16.")
    view_names = parse_views(views)
    model = load_pretrained(checkpoint)
    if layer == "projector" and model.projector is None:
        raise BadInput(f"checkpoint {checkpoint} has no projector; use --layer backbone.")
    data_spec = data_spec or model.info["data"]["spec"]
    split = split or model.info["data"].get("split", "all")
    dev = resolve_device(device)
    dataset = load_dataset(data_spec, split=split, image_size=model.image_size)
    n, h, w, c = dataset.images.shape
    if c != model.in_channels:
        raise BadInput(f"--data {data_spec} has {c}-channel images but checkpoint {checkpoint} was trained on "
                       f"{model.in_channels}-channel ones.")
    identity = file_identity(checkpoint)
    stored = view_dataset_names(view_names, draws)
    # The augmented views flip only if pretraining did: a model taught that mirrored digits are
    # other digits would see the flipped weak view as a different image (flip_p 0 in its config).
    stage1 = model.info.get("config", {})
    flip_p = float(stage1.get("flip_p", 0.5))
    # Cutout's side: the caller's, else the one stage 1 trained with (scan+ uses one L for both).
    cutout = cutout if cutout is not None else stage1.get("cutout")
    config = {"layer": layer, "views": view_names, "draws": draws if stored else 1, "seed": seed if stored else 0,
              "split": split, "dtype": dtype, "image_size": model.image_size, "cutout": cutout,
              "view_flip_p": flip_p if stored else None}
    key = content_key("features", config, [f"checkpoint:{identity}", f"data:{dataset.fingerprint}"])
    path = output_path(out, cache_root(cache_dir), "features", key)

    def build(target: Path) -> None:
        from ccli.data.augment import strong_view, weak_view
        from ccli.data.gpu_augment import BatchAugmenter

        net = model.backbone if layer == "backbone" else torch.nn.Sequential(model.backbone, model.projector)
        net = net.to(dev).eval()
        amp = autocast_dtype(dev, "auto")
        out_dim = int(model.backbone.out_dim if layer == "backbone" else model.projector.out_dim)
        clean = BatchAugmenter([_eval_view(h)], model.mean, model.std)
        augmenters = {"weak": BatchAugmenter([weak_view(h, flip_p=flip_p)], model.mean, model.std),
                      "strong": BatchAugmenter([strong_view(h, cutout=cutout, flip_p=flip_p)], model.mean, model.std)}
        attrs = {"normalized": False, "layer": layer, "checkpoint": str(checkpoint), "checkpoint_identity": identity,
                 "backbone": model.info["backbone"]["name"], "data_spec": dataset.spec, "split": split}
        with ArtifactWriter(target, "features", key, config, [identity, dataset.fingerprint], attrs) as writer:
            writer.write("labels", dataset.labels)
            writer.write("index", np.arange(n, dtype=np.int64))
            writer.create("features", (n, out_dim), dtype)
            for name, _, _ in stored:
                writer.create(name, (n, out_dim), dtype)
            if stored:
                writer.set_attrs("views", names=json.dumps([s[0] for s in stored]), draws=draws)
            with torch.no_grad():
                for start in range(0, n, batch_size):
                    x = torch.from_numpy(dataset.images[start : start + batch_size]).to(dev).permute(0, 3, 1, 2)
                    gen = torch.Generator(device=dev)
                    with autocast(dev, amp):
                        writer.write_rows("features", start, net(clean(x, gen)[0]).float().cpu().numpy())
                        for name, view, draw in stored:
                            gen.manual_seed(mix_seed(seed, EMBED_VIEWS.index(view), draw, start))
                            feats = net(augmenters[view](x, gen)[0])
                            writer.write_rows(name, start, feats.float().cpu().numpy())

    hit = get_or_compute(path, "features", key, build, force=force)
    return path, hit


def _eval_view(size: int):
    from ccli.data.augment import eval_view

    return eval_view(size)
