"""The clustering-method base: everything a method trained on images shares, written once.

A method module supplies only what is its own:

    Config(TrainConfig)          its defaults (the engine section is shared: `section(lambda: EngineConfig(…))`)
    build(setup) -> Plan         its model, and one `Stage` per training stage: views, an optional
                                 neighbour view, `loss_step(net, batch, ctx)` and hooks
    run(ctx) = train(ctx, build)

and `train` does the rest: torchrun/DDP start-up, the thread limit, backbone build, input
normalisation, the warm start from `--checkpoint`, the neighbour table from `--neighbors` or
`--graph` (already checked by the registry), the data path per stage (CPU loader or batched
on the device, anchor views and, when a stage asks, a sampled neighbour's views), the kNN
monitor, per-epoch cluster scores in metrics.jsonl, one checkpoint per stage
(`checkpoint-<stage>.pt`, a finished stage is not retrained, an unfinished one resumes) and
the final prediction: the last stage's model on un-augmented images (nothing is selected by
labels).

`loss_step(net, batch, ctx)` gets the batch dict of ccli.engine.datapath ("views", "index",
"labels", and "neighbor_views"/"neighbor_index" for pair stages) and the engine's StepContext
(epoch, step, total_steps, lr, stage, dist). Under torchrun each rank sees its slice of the
global batch; `gather(tensor, ctx)` gives a loss the whole batch's rows (negatives) with
gradients, so 2 processes compute what one process with the global batch computes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ccli import log
from ccli.config import section
from ccli.engine.loop import EngineConfig
from ccli.errors import BadInput
from ccli.methods.registry import Inputs, Prediction, RunContext


@dataclass
class TrainConfig:
    """The keys every image-trained clustering method has (a method's Config extends it)."""

    num_clusters: int = 0  # 0 = the dataset's class count
    seed: int = 42
    backbone: str = "resnet34-imagenet"
    image_size: Optional[int] = 224  # side of the training views; None = the images' own size
    normalize: bool = False  # true = the dataset's channel mean/std (a --checkpoint brings its own)
    eval_batch_size: int = 512
    num_neighbors: int = 0  # neighbour-pair methods: the first q of each row of --neighbors/--graph (0 = all)
    engine: EngineConfig = section(EngineConfig)


@dataclass
class Stage:
    """One named training stage: what the engine trains, on which views, with which loss."""

    name: str
    views: Sequence[Any]  # ViewAug per anchor view
    loss_step: Callable[[Any, dict, Any], dict]
    engine: Optional[EngineConfig] = None  # None: the config's engine section
    neighbor_views: Sequence[Any] = ()  # non-empty: each batch carries one sampled neighbour, augmented so
    trainable: Any = None  # the optimised sub-module; None: the whole model
    before_epoch: Optional[Callable[[Any], None]] = None
    after_step: Optional[Callable[[Any], None]] = None
    param_groups: Optional[list] = None


@dataclass
class Plan:
    """What a method's build() returns."""

    model: Any  # torch.nn.Module with a `.backbone`; everything it holds is checkpointed
    stages: list[Stage]
    # x (un-augmented, normalised batch) -> soft assignments [b, K]; None: model.assign
    assign: Optional[Callable[[Any], Any]] = None
    record: dict = field(default_factory=dict)  # extra entries for config.yaml / the checkpoints


@dataclass
class Setup:
    """What build() receives: the run, and the parts the base has already made."""

    run: RunContext
    config: Any
    dataset: Any  # ccli.data.sources.ImageDataset
    backbone: Any  # built under the run's seed, warm-started from --checkpoint when given
    size: int  # side of the training views
    channels: int
    mean: list
    std: list
    device: Any
    dist: Any
    neighbors: Optional[np.ndarray] = None  # [N, q] int64 table (−1 padded) from --neighbors / --graph

    @property
    def num_clusters(self) -> int:
        return self.run.num_clusters


def gather(tensor, ctx):
    """The rows of `tensor` from every rank (with gradients): the global batch's negatives."""
    from ccli.engine.ddp import all_gather_with_grad

    return all_gather_with_grad(tensor, ctx.dist)


# ------------------------------------------------------------------------------------------
# Checks a method calls from validate()
# ------------------------------------------------------------------------------------------
def view_size(config: TrainConfig, images: np.ndarray) -> int:
    return int(config.image_size or images.shape[1])


def check_common(inputs: Inputs, config: TrainConfig) -> None:
    """Bad input a run on images would only hit after writing: sizes, batch, backbone, checkpoint."""
    from ccli.engine.ddp import env_world_size
    from ccli.models import backbone_entry

    n, h, w, c = inputs.dataset.images.shape
    engine = config.engine
    if h != w and not config.image_size:
        raise BadInput(f"--data {inputs.data} has {h}×{w} images; square views are needed (set image_size=…).")
    if engine.epochs < 1:
        raise BadInput(f"epochs={engine.epochs} must be at least 1.")
    if engine.batch_size < 2:
        raise BadInput(f"batch_size={engine.batch_size} is too small: contrastive losses need at least 2 images.")
    if engine.batch_size > n:
        raise BadInput(f"batch_size={engine.batch_size} is larger than the {n:,} images of --data {inputs.data}.")
    world = env_world_size()
    if engine.batch_size % world:
        raise BadInput(f"batch_size={engine.batch_size} is not divisible by the {world} processes of this torchrun.")
    if engine.augment_on not in ("gpu", "cpu"):
        raise BadInput(f"augment_on={engine.augment_on} must be gpu or cpu.")
    if config.num_neighbors < 0:
        raise BadInput(f"num_neighbors={config.num_neighbors} must be 0 (all) or more.")
    size = view_size(config, inputs.dataset.images)
    backbone_entry(config.backbone, c, size)
    if inputs.checkpoint is not None:
        start_from_checkpoint(inputs, config, c, size)


def start_from_checkpoint(inputs: Inputs, config: TrainConfig, channels: int, size: int):
    """The pretrained backbone of --checkpoint, after checking it is the one this run builds."""
    from ccli.methods.pretrain import load_pretrained

    pretrained = load_pretrained(inputs.checkpoint, expect_backbone=config.backbone, what="--checkpoint")
    if pretrained.in_channels != channels or pretrained.image_size != size:
        raise BadInput(
            f"--checkpoint {inputs.checkpoint} was trained on {pretrained.in_channels}-channel {pretrained.image_size} px "
            f"images, but this run uses {channels}-channel {size} px views."
        )
    return pretrained


# ------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------
def train(ctx: RunContext, build: Callable[[Setup], Plan]) -> Optional[Prediction]:
    """Train the method `build` describes and predict; None on the ranks other than 0 under torchrun."""
    from ccli.engine.ddp import init_distributed, shutdown
    from ccli.threads import limit_threads

    dist, device = init_distributed(ctx.device)
    finished = False
    try:
        with limit_threads(ctx.config.engine.threads, device):
            result = _train(ctx, build, dist, device)
        finished = True
        return result
    finally:
        if dist.distributed:
            shutdown(finished)


def _train(ctx: RunContext, build: Callable[[Setup], Plan], dist, device) -> Optional[Prediction]:
    import torch

    from ccli.data.augment import channel_stats, eval_view
    from ccli.data.gpu_augment import BatchAugmenter
    from ccli.engine.checkpoint import file_identity
    from ccli.models import build_backbone

    config = ctx.config
    dataset = ctx.inputs.dataset
    n, h, w, c = dataset.images.shape
    size = view_size(config, dataset.images)
    torch.manual_seed(config.seed)
    backbone = build_backbone(config.backbone, c, size)
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
    setup = Setup(ctx, config, dataset, backbone, size, c, list(mean), list(std), device, dist,
                  neighbor_table(ctx.inputs, config.num_neighbors))
    plan = build(setup)
    model = plan.model
    assign = plan.assign or model.assign
    clean = BatchAugmenter([eval_view(size)], mean, std)

    def predict(device) -> np.ndarray:
        generator = torch.Generator(device=device)
        return predict_probabilities(model, assign, ctx.num_clusters, dataset.images,
                                     lambda x: clean(x, generator)[0], device, config.eval_batch_size)

    # The last epoch's pass is the final prediction: keep it rather than run it twice.
    evaluated: dict[str, np.ndarray] = {}

    def epoch_metrics(device) -> dict:
        """ACC/NMI/ARI of the argmax assignment over the training set, scored as the final labels are."""
        from ccli.methods.registry import scores_for

        evaluated["probs"] = predict(device)
        scores = scores_for(dataset.labels, evaluated["probs"].argmax(1))
        return {k: scores[k] for k in ("acc", "nmi", "ari")}

    record = {"method": ctx.method, "config": dataclasses.asdict(config), "num_clusters": ctx.num_clusters,
              "data": dataset.spec, "split": ctx.inputs.split, "data_fingerprint": dataset.fingerprint,
              "inputs": list(ctx.inputs.keys), "start_checkpoint": start["identity"] if start else None,
              **plan.record}
    extra = {
        "kind": "cluster",
        "method": ctx.method,
        "backbone": {"name": config.backbone, "in_channels": c, "image_size": size, "out_dim": int(backbone.out_dim)},
        "data": {"spec": dataset.spec, "split": ctx.inputs.split, "fingerprint": dataset.fingerprint, "num_images": n,
                 "num_classes": dataset.num_classes},
        "normalization": {"mean": list(mean), "std": list(std)},
        "backbone_prefix": "backbone.",
        "num_clusters": ctx.num_clusters,
        "start_checkpoint": start,
    }
    for number, stage in enumerate(plan.stages):
        last = number == len(plan.stages) - 1
        _fit_stage(ctx, setup, plan, stage, record, extra, epoch_metrics if dataset.has_labels and last else None)

    if not dist.is_main:
        return None
    # fit() evaluates after the last epoch whenever it evaluates at all; a resumed run whose
    # checkpoint was already complete trains no epoch and evaluates nothing here.
    probs = evaluated["probs"] if "probs" in evaluated else predict(device)
    labels = probs.argmax(1).astype(np.int64)
    used = int(len(np.unique(labels)))
    if used < ctx.num_clusters:
        log.warn(f"{ctx.method}: only {used} of the {ctx.num_clusters} clusters received samples.")
    return Prediction(labels, probs, {"clusters_used": used})


def stage_checkpoint(ctx: RunContext, stage: str):
    return ctx.run_dir / f"checkpoint-{stage}.pt"


def _fit_stage(ctx: RunContext, setup: Setup, plan: Plan, stage: Stage, record: dict, extra: dict,
               epoch_metrics) -> None:
    from ccli.engine import KnnMonitor, RunFiles, Task, fit, make_data_path

    config, dataset, model = ctx.config, setup.dataset, plan.model
    engine = stage.engine or config.engine
    if stage.neighbor_views and setup.neighbors is None:
        raise BadInput(f"method {ctx.method} trains on neighbour pairs in stage {stage.name}: give --neighbors or --graph.")
    files = RunFiles(stage_checkpoint(ctx, stage.name), ctx.metrics_path, ctx.run_dir / "config.yaml")
    stage_record = {**record, "stage": stage.name, "engine": dataclasses.asdict(engine)}
    state = _readable_checkpoint(files.checkpoint) if ctx.resume else None
    resume = state is not None
    if resume and state.get("complete"):
        # A finished stage is not retrained: its weights are where the next stage starts.
        model.load_state_dict(state["model"])
        log.info(f"{ctx.method}: stage {stage.name} is complete in {files.checkpoint}; continuing after it")
        return
    data = make_data_path(engine.augment_on, dataset.images, dataset.labels, stage.views, setup.mean, setup.std,
                          engine.batch_size, setup.device, config.seed, setup.dist, drop_last=True,
                          workers=engine.workers, neighbors=setup.neighbors if stage.neighbor_views else None,
                          neighbor_views=stage.neighbor_views)
    monitor = None
    if dataset.has_labels and engine.knn_every > 0:
        candidate = KnnMonitor(dataset.images, dataset.labels, setup.mean, setup.std, engine.knn_samples, engine.knn_k,
                               seed=config.seed)
        monitor = candidate if candidate.usable else None
    task = Task(model=model, trainable=stage.trainable or model, loss_step=stage.loss_step,
                before_epoch=stage.before_epoch, after_step=stage.after_step, param_groups=stage.param_groups,
                embed=lambda x: model.backbone(x), epoch_metrics=epoch_metrics)
    pairs = f" + a neighbour × {len(stage.neighbor_views)}" if stage.neighbor_views else ""
    log.info(f"{ctx.method}: {config.backbone} on {dataset.spec} ({len(dataset):,} images, {setup.size} px views × "
             f"{len(stage.views)}{pairs}), K={ctx.num_clusters}, stage {stage.name}: {engine.epochs} epochs × "
             f"{len(data)} steps on {setup.device}" + (f" × {setup.dist.world_size} processes" if setup.dist.distributed
                                                       else ""))
    fit(task, data, engine, files, config_record=stage_record, seed=config.seed, stage=stage.name,
        checkpoint_extra={**extra, "stage": stage.name}, resume=resume, monitor=monitor, dist=setup.dist,
        device=setup.device, announce=stage is plan.stages[0],
        later_epochs=sum((s.engine or config.engine).epochs for s in plan.stages[plan.stages.index(stage) + 1:]))


def _readable_checkpoint(path) -> Optional[dict]:
    """The stage checkpoint of this run's key, if one can be read: continue it rather than start over."""
    from ccli.engine.checkpoint import load_checkpoint

    if not path.is_file():
        return None
    try:
        return load_checkpoint(path)
    except BadInput:
        log.warn(f"{path} cannot be read; the stage starts from scratch.")
        return None


def neighbor_table(inputs: Inputs, num_neighbors: int) -> Optional[np.ndarray]:
    """The [N, q] neighbour table of --neighbors (or the heaviest entries of --graph's rows), −1 padded."""
    from ccli.data.pairs import neighbor_table as from_indices
    from ccli.data.pairs import table_from_graph
    from ccli.store import open_artifact

    if inputs.neighbors is not None:
        with open_artifact(inputs.neighbors, "neighbors", what="--neighbors") as art:
            indices = art.read("indices")
            has_self = not bool(art.attr("exclude_self", True))
        return from_indices(indices, num_neighbors or None, has_self)
    if inputs.graph is not None:
        with open_artifact(inputs.graph, "graph", what="--graph") as art:
            indptr, indices, data = art.read("indptr"), art.read("indices"), art.read("data")
        n = len(indptr) - 1
        widest = int(np.diff(indptr).max()) if n else 0
        return table_from_graph(indptr, indices, data, n, num_neighbors or max(1, widest))
    return None


def predict_probabilities(model, assign, num_clusters: int, images: np.ndarray, to_input, device,
                          batch_size: int = 512) -> np.ndarray:
    """Soft assignments [N, K] for uint8 images [N, H, W, C] in eval mode (BN running statistics).

    `to_input` turns a uint8 NCHW batch on `device` into the model's float input: the
    evaluation transform (resize and normalise, no augmentation).
    """
    import torch

    was_training = model.training
    model.eval()
    out = np.empty((len(images), num_clusters), dtype=np.float32)
    try:
        with torch.no_grad():
            for begin in range(0, len(images), batch_size):
                batch = torch.from_numpy(np.ascontiguousarray(images[begin : begin + batch_size])).to(device)
                out[begin : begin + len(batch)] = assign(to_input(batch.permute(0, 3, 1, 2))).float().cpu().numpy()
    finally:
        model.train(was_training)
    return out
