"""Contrastive Clustering (Li et al., AAAI 2021): the two-head base that dcacn (and cctc) extend.

A shared backbone feeds an instance projector (NT-Xent over the rows of two views, τ_I) and
a softmax cluster head (NT-Xent over the K columns, τ_C, plus the entropy term log K − H(π)).
Labels are the argmax of the cluster head on un-augmented images; no k-means anywhere.
Defaults are CC's code (dcacn.md §9.3): ResNet-34 with the ImageNet stem at 224 px, Adam 3e-4,
batch 256, 1000 epochs, τ_I 0.5, τ_C 1.0, seed 42, no input normalisation.

`train_clusterer` is the part every method of this family shares: model and data path on
the engine, resume, the kNN monitor, the per-epoch cluster metrics, and the final cluster-head
pass; a method supplies its views, its backbone and its loss.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ccli import log
from ccli.errors import BadInput
from ccli.methods.registry import Inputs, Prediction, RunContext


@dataclass
class Config:
    num_clusters: int = 0  # 0 = the dataset's class count
    backbone: str = "resnet34-imagenet"
    image_size: Optional[int] = 224  # side of the training views; None = the images' own size
    # engine (ccli.engine.EngineConfig reads these by name)
    epochs: int = 1000
    batch_size: int = 256
    optimizer: str = "adam"
    lr: float = 3.0e-4
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    final_lr: float = 0.0
    grad_clip: float = 0.0
    precision: str = "auto"
    channels_last: bool = True
    compile: bool = False
    seed: int = 42
    knn_every: int = 10  # epochs between kNN-monitor evaluations of the backbone (0 = off)
    knn_samples: int = 5000
    knn_k: int = 20
    # epochs between cluster-head ACC/NMI/ARI on the training set in metrics.jsonl (labelled data;
    # 0 = off): one eval-mode pass over the images, about 1/6 of a two-view training epoch
    eval_every: int = 10
    threads: int = 0  # torch intra-op threads on CPU; 0 keeps torch's default
    workers: int = -1
    augment_on: str = "gpu"  # gpu: batched on the training device (CPU tensors too) | cpu: per-sample workers
    # augmentation (CC's transform.py)
    crop_scale: tuple[float, float] = (0.08, 1.0)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    jitter_strength: float = 1.0  # s in ColorJitter(0.8s, 0.8s, 0.8s, 0.2s); CC uses 0.5 on CIFAR
    gray_p: float = 0.2
    blur_p: float = 0.0
    intensity_p: float = 0.8  # 1-channel data only: per-image brightness scale and gamma
    intensity_scale: tuple[float, float] = (0.5, 1.5)
    intensity_gamma: tuple[float, float] = (0.5, 2.0)
    normalize: bool = False  # CC feeds ToTensor() output; true = the dataset's channel mean/std
    # heads and loss
    inst_hidden: int = 512
    inst_dim: int = 128
    clus_hidden: int = 512
    tau: float = 0.5
    tau_c: float = 1.0
    entropy_weight: float = 1.0
    cluster_weight: float = 1.0
    bn_per_view: bool = True  # CC's code forwards each view separately
    eval_batch_size: int = 512


# ------------------------------------------------------------------------------------------
# Parts that dcacn reuses
# ------------------------------------------------------------------------------------------
def view_size(config: Config, images: np.ndarray) -> int:
    return int(config.image_size or images.shape[1])


def global_view(config: Config, size: int, channels: int, **overrides):
    """CC's training view: RRC, flip, ColorJitter(0.8s,0.8s,0.8s,0.2s) p 0.8, grayscale p 0.2, optional blur.

    On 1-channel data saturation, hue and grayscale mean nothing; the grayscale intensity
    jitter (per-image scale and gamma) takes their place.
    """
    from ccli.data.augment import ViewAug

    s = config.jitter_strength
    colour = channels == 3
    values = dict(
        size=size, scale=tuple(config.crop_scale), flip_p=config.flip_p, jitter_p=config.jitter_p,
        brightness=0.8 * s, contrast=0.8 * s, saturation=0.8 * s if colour else 0.0, hue=0.2 * s if colour else 0.0,
        gray_p=config.gray_p if colour else 0.0, blur_p=config.blur_p,
        intensity_p=0.0 if colour else config.intensity_p, intensity_scale=tuple(config.intensity_scale),
        intensity_gamma=tuple(config.intensity_gamma),
    )
    values.update(overrides)
    return ViewAug(**values)


def check_common(inputs: Inputs, config: Config) -> None:
    """Bad input a run of this family would only hit after writing: sizes, batch, backbone, checkpoint."""
    from ccli.models import backbone_entry

    n, h, w, c = inputs.dataset.images.shape
    if h != w and not config.image_size:
        raise BadInput(f"--data {inputs.data} has {h}×{w} images; square views are needed (--set image_size=…).")
    if config.batch_size < 2:
        raise BadInput(f"--batch-size {config.batch_size} is too small: contrastive losses need at least 2 images.")
    if config.batch_size > n:
        raise BadInput(f"--batch-size {config.batch_size} is larger than the {n:,} images of --data {inputs.data}.")
    if config.augment_on not in ("gpu", "cpu"):
        raise BadInput(f"augment_on={config.augment_on} must be gpu or cpu.")
    size = view_size(config, inputs.dataset.images)
    backbone_entry(config.backbone, c, size)
    if inputs.checkpoint is not None:
        start_from_checkpoint(inputs, config, c, size)


def start_from_checkpoint(inputs: Inputs, config: Config, channels: int, size: int):
    """The pretrained backbone of --checkpoint, after checking it is the one this run builds."""
    from ccli.methods.pretrain import load_pretrained

    pretrained = load_pretrained(inputs.checkpoint, expect_backbone=config.backbone, what="--checkpoint")
    if pretrained.in_channels != channels or pretrained.image_size != size:
        raise BadInput(
            f"--checkpoint {inputs.checkpoint} was trained on {pretrained.in_channels}-channel {pretrained.image_size} px "
            f"images, but this run uses {channels}-channel {size} px views."
        )
    return pretrained


def train_clusterer(ctx: RunContext, backbone_name: str, views: Sequence[Any],
                    loss_fn: Callable[[list, list], dict], extra_record: dict | None = None) -> Prediction:
    """Train backbone + instance head + cluster head on `views` with `loss_fn(hs, ps)` and predict.

    `loss_fn` returns {"loss": total, other scalars}; the engine averages every entry per epoch
    into metrics.jsonl. Returns the argmax labels and the probabilities of the final model on
    un-augmented images (the final epoch: nothing is selected by labels, A12).
    """
    import torch

    from ccli.engine import resolve_device

    config = ctx.config
    device = resolve_device(ctx.device)
    threads = torch.get_num_threads()
    if device.type == "cpu" and config.threads > 0:
        torch.set_num_threads(config.threads)
    try:
        return _train(ctx, backbone_name, views, loss_fn, extra_record, device)
    finally:
        torch.set_num_threads(threads)  # the caller (a benchmark, a test session) keeps its own setting


def _train(ctx: RunContext, backbone_name: str, views: Sequence[Any], loss_fn: Callable[[list, list], dict],
           extra_record: dict | None, device) -> Prediction:
    import torch

    from ccli.data.augment import channel_stats, eval_view
    from ccli.data.gpu_augment import BatchAugmenter
    from ccli.engine import EngineConfig, KnnMonitor, RunFiles, Task, fit, make_data_path
    from ccli.engine.checkpoint import file_identity
    from ccli.models import build_backbone
    from ccli.models.cluster_heads import ContrastiveClusterer, predict_probabilities

    config = ctx.config
    dataset = ctx.inputs.dataset
    n, h, w, c = dataset.images.shape
    size = view_size(config, dataset.images)
    torch.manual_seed(config.seed)
    backbone = build_backbone(backbone_name, c, size)
    if config.normalize:
        mean, std = channel_stats(dataset.images, seed=config.seed)
    else:
        mean, std = [0.0] * c, [1.0] * c
    start = None
    if ctx.inputs.checkpoint is not None:
        pretrained = start_from_checkpoint(ctx.inputs, config, c, size)
        backbone.load_state_dict(pretrained.backbone.state_dict())
        mean, std = pretrained.mean, pretrained.std  # the backbone learnt on inputs normalised this way
        start = {"path": str(ctx.inputs.checkpoint), "identity": file_identity(ctx.inputs.checkpoint)}
    model = ContrastiveClusterer(backbone, backbone.out_dim, ctx.num_clusters, config.inst_hidden, config.inst_dim,
                                 config.clus_hidden, config.bn_per_view)

    def loss_step(net, batch, step_ctx):
        hs, ps = net(batch["views"])
        return loss_fn(hs, ps)

    clean = BatchAugmenter([eval_view(size)], mean, std)

    def predict(device) -> np.ndarray:
        generator = torch.Generator(device=device)
        return predict_probabilities(model, dataset.images, lambda x: clean(x, generator)[0], device,
                                     config.eval_batch_size)

    # The last epoch's pass is the final prediction: keep it rather than run it twice.
    evaluated: dict[str, np.ndarray] = {}

    def epoch_metrics(device) -> dict:
        """ACC/NMI/ARI of the cluster head's argmax over the training set, scored as the final labels are."""
        from ccli.methods.registry import scores_for

        evaluated["probs"] = predict(device)
        scores = scores_for(dataset.labels, evaluated["probs"].argmax(1))
        return {k: scores[k] for k in ("acc", "nmi", "ari")}

    task = Task(model=model, trainable=model, loss_step=loss_step, embed=lambda x: model.backbone(x),
                epoch_metrics=epoch_metrics if dataset.has_labels else None)
    data = make_data_path(config.augment_on, dataset.images, dataset.labels, views, mean, std, config.batch_size,
                          device, config.seed, drop_last=True, workers=config.workers)
    monitor = None
    if dataset.has_labels and config.knn_every > 0:
        candidate = KnnMonitor(dataset.images, dataset.labels, mean, std, config.knn_samples, config.knn_k,
                               seed=config.seed)
        monitor = candidate if candidate.usable else None
    record = {**dataclasses.asdict(config), "method": ctx.method, "num_clusters": ctx.num_clusters,
              "data": dataset.spec, "split": ctx.inputs.split, "data_fingerprint": dataset.fingerprint,
              "start_checkpoint": start["identity"] if start else None, **(extra_record or {})}
    extra = {
        "kind": "cluster",
        "method": ctx.method,
        "backbone": {"name": backbone_name, "in_channels": c, "image_size": size, "out_dim": int(backbone.out_dim)},
        "data": {"spec": dataset.spec, "split": ctx.inputs.split, "fingerprint": dataset.fingerprint, "num_images": n,
                 "num_classes": dataset.num_classes},
        "normalization": {"mean": list(mean), "std": list(std)},
        "backbone_prefix": "backbone.",
        "num_clusters": ctx.num_clusters,
        "start_checkpoint": start,
    }
    files = RunFiles(ctx.checkpoint_path, ctx.metrics_path, ctx.run_dir / "config.yaml")
    resume = ctx.resume and _resumable(ctx.checkpoint_path)
    log.info(f"{ctx.method}: {backbone_name} on {dataset.spec} ({n:,} images, {size} px views × {len(views)}), "
             f"K={ctx.num_clusters}, {config.epochs} epochs × {len(data)} steps on {device}")
    fit(task, data, EngineConfig.from_config(config, device=ctx.device), files, config_record=record,
        checkpoint_extra=extra, resume=resume, monitor=monitor, device=device)

    # fit() evaluates after the last epoch whenever it evaluates at all; a resumed run whose
    # checkpoint was already complete trains no epoch and evaluates nothing here.
    probs = evaluated["probs"] if "probs" in evaluated else predict(device)
    labels = probs.argmax(1).astype(np.int64)
    used = int(len(np.unique(labels)))
    if used < ctx.num_clusters:
        log.warn(f"{ctx.method}: only {used} of the {ctx.num_clusters} clusters received samples.")
    return Prediction(labels, probs, {"clusters_used": used})


def _resumable(path) -> bool:
    """A checkpoint of this run's key that can be read: continue it rather than start over."""
    from ccli.engine.checkpoint import load_checkpoint

    if not path.is_file():
        return False
    try:
        load_checkpoint(path)
    except BadInput:
        log.warn(f"{path} cannot be read; training starts from scratch.")
        return False
    return True


# ------------------------------------------------------------------------------------------
# CC itself
# ------------------------------------------------------------------------------------------
def cc_loss(hs: list, ps: list, config: Config) -> dict:
    """CC's objective on two views: L = NT-Xent(h^a, h^b; τ_I) + w·[column NT-Xent(p^a, p^b; τ_C) + η(R(P^a)+R(P^b))]."""
    from ccli.losses.cluster import cluster_contrastive_loss
    from ccli.losses.nt_xent import nt_xent

    instance = nt_xent(hs[0], hs[1], config.tau)
    cluster = cluster_contrastive_loss(ps[0], ps[1], config.tau_c, config.entropy_weight)
    return {"loss": instance + config.cluster_weight * cluster, "instance": instance.detach(),
            "cluster": cluster.detach()}


def validate(inputs: Inputs, config: Config, num_clusters: int) -> None:
    check_common(inputs, config)


def run(ctx: RunContext) -> Prediction:
    config: Config = ctx.config
    _, _, _, c = ctx.inputs.dataset.images.shape
    view = global_view(config, view_size(config, ctx.inputs.dataset.images), c)
    return train_clusterer(ctx, config.backbone, [view, view], lambda hs, ps: cc_loss(hs, ps, config))
