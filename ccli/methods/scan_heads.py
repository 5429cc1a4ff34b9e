"""SCAN's shared parts (Van Gansbeke et al., ECCV 2020; scanplus.md §6, §10): what `scan` and `scan+` compose.

- `ScanConfig`: the clustering-step keys (heads, entropy weight, frozen backbone, views), the
  optional self-labelling stage and the chain from images (pretrain → embed → neighbours).
- `MultiHeadClusterer`: the backbone (warm-started from `--checkpoint`) with H linear heads
  Linear(d, K) (§6.1, A13/A14); with `head_only` the backbone stays in eval mode (BN frozen) and
  only the heads train (SCAN's `update_cluster_head_only`).
- `cluster_stage`: the SCAN step (§6.2–6.4): an anchor and one neighbour drawn per anchor and
  per epoch from N_x ∪ {x}, both augmented, loss = Σ_heads [−log⟨p_a, p_n⟩ − λ H(p̄)].
- head selection without labels (§6.5): after the stage's last step every head's SCAN loss is
  computed on the whole training set (un-augmented images, every mined pair) and the lowest is
  kept; predictions are the argmax of that head.
- `self_label_stage` (§6.6, SCAN's third step, not in the scan+ paper): confident (max p >
  threshold) predictions on the un-augmented image train the strong view with cross-entropy,
  optionally class-balanced (ccli.losses.self_label).
- `prepare_inputs`: with no `--checkpoint` the preset's `pretrain_preset` recipe is pretrained,
  with no `--neighbors` the checkpoint's backbone features are embedded and mined; all three go
  through the cache, so a second run recomputes none of them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np

from ccli import log
from ccli.config import section
from ccli.engine.loop import EngineConfig
from ccli.errors import BadInput
from ccli.methods.registry import Inputs, RunContext
from ccli.methods.scan_select import check_rule, choose_head, head_losses, select_head  # noqa: F401 (the family's API)
from ccli.methods.trainer import Plan, Setup, Stage, TrainConfig, check_common, gather

AUGMENTS = ("none", "weak", "crop", "simclr", "strong")


@dataclass
class ScanConfig(TrainConfig):
    """SCAN's clustering step on a pretrained backbone; defaults follow SCAN's STL-10 config (scanplus.md §6.3)."""

    backbone: str = "resnet50"
    image_size: Optional[int] = None  # None: the images' own size (the checkpoint's)
    num_neighbors: int = 20  # q: neighbours per anchor (scanplus.md §5.2: 20 for STL-10, 50 for ImageNet-*)
    engine: EngineConfig = section(lambda: EngineConfig(
        epochs=100, batch_size=128, optimizer="adam", lr=1e-4, weight_decay=1e-4, schedule="constant",
        knn_every=0, eval_every=10,
    ))
    num_heads: int = 1  # SCAN: 1 (CIFAR/STL), 10 (ImageNet-*); the lowest-loss head is kept (§6.5)
    entropy_weight: float = 5.0  # λ (SCAN configs; scanplus.md A15)
    # which head is kept without labels (ccli.methods.scan_select): SCAN's lowest loss (§6.5), or one
    # that reads the heads' agreement, for features where the loss does not rank the heads
    head_selection: Literal["loss", "consistency", "medoid"] = "loss"
    head_only: bool = False  # true: backbone frozen in eval mode, only the heads train (SCAN ImageNet)
    # what the heads read: the backbone's pooled feature (SCAN's ClusteringModel), or the checkpoint's
    # pretrained projector on top of it (an MLP head whose hidden layers come from stage 1, as scan+'s Φ_c, A11)
    head_input: Literal["backbone", "projector"] = "backbone"
    include_self: bool = True  # sample the neighbour from N_x ∪ {x} (SCAN's NeighborsDataset; §6.4)
    # views of the clustering step: none | weak (flip + shift) | crop (random resized crop) | simclr (SimCLR's
    # crop + colour view, SCAN's ImageNet choice) | strong (SCAN's "ours": flip + shift + RandAug + Cutout)
    augment: str = "strong"
    crop_scale: tuple[float, float] = (0.2, 1.0)
    flip_p: float = 0.5
    randaug_n: int = 4
    cutout: int = 0  # 0: SCAN's side for the image size (ccli.data.augment.default_cutout)
    # self-labelling (SCAN step 3; scanplus.md §6.6)
    self_label: bool = False
    self_label_threshold: float = 0.99
    self_label_balance: bool = True  # class-balanced cross-entropy (SCAN's STL-10 config)
    self_label_augment: str = "strong"
    self_label_epochs: int = 100
    self_label_batch_size: int = 1000
    self_label_optimizer: str = "adam"
    self_label_lr: float = 1e-4
    self_label_weight_decay: float = 1e-4
    # the chain from images (no --checkpoint / --neighbors): a `ccli pretrain` recipe (<method>-<name>)
    pretrain_preset: str = ""
    pretrain_epochs: int = 0  # 0 = the recipe's epochs
    pretrain_overrides: tuple[str, ...] = ()  # KEY=VALUE settings on top of the recipe (as `ccli pretrain --set`)
    embed_layer: Literal["backbone", "projector"] = "backbone"  # scanplus.md A9: mine on backbone features


# ------------------------------------------------------------------------------------------
# Checks
# ------------------------------------------------------------------------------------------
def check_scan(inputs: Inputs, config: ScanConfig, num_clusters: int) -> None:
    """Bad input of the SCAN family, before anything is written."""
    if config.num_heads < 1:
        raise BadInput(f"num_heads={config.num_heads} must be at least 1.")
    check_rule(config.head_selection, config.num_heads)
    if config.num_neighbors < 1:
        raise BadInput(f"num_neighbors={config.num_neighbors} must be at least 1 (q, the neighbours per anchor).")
    if not 0.0 < config.self_label_threshold < 1.0:
        raise BadInput(f"self_label_threshold={config.self_label_threshold} must lie strictly between 0 and 1.")
    for key in ("augment", "self_label_augment"):
        if getattr(config, key) not in AUGMENTS:
            raise BadInput(f"{key}={getattr(config, key)} is not one of {', '.join(AUGMENTS)}.")
    if config.entropy_weight < 0:
        raise BadInput(f"entropy_weight={config.entropy_weight} must be 0 or more.")
    if config.self_label and config.self_label_epochs < 1:
        raise BadInput(f"self_label_epochs={config.self_label_epochs} must be at least 1.")
    n = inputs.num_samples
    if config.self_label and not 2 <= config.self_label_batch_size <= n:
        raise BadInput(f"self_label_batch_size={config.self_label_batch_size} must lie between 2 and the {n:,} images.")
    if num_clusters > n:
        raise BadInput(f"K={num_clusters} is larger than the {n:,} images.")
    if inputs.neighbors is not None:
        width = neighbors_width(inputs.neighbors)
        if width < config.num_neighbors:
            raise BadInput(f"--neighbors {inputs.neighbors} has {width} neighbours per image, fewer than "
                           f"num_neighbors={config.num_neighbors} (q); mine at least {config.num_neighbors}.")
    if inputs.checkpoint is None:
        if not config.pretrain_preset:
            raise BadInput("SCAN starts from a pretrained backbone: give --checkpoint, or a pretraining recipe with "
                           "--set pretrain_preset=NAME (the digits presets have one).")
        recipe = pretrain_config(config)
        if recipe.backbone != config.backbone:
            raise BadInput(f"pretrain_preset={config.pretrain_preset} trains backbone {recipe.backbone}, but this "
                           f"run's backbone is {config.backbone}.")
    check_common(inputs, config)


def neighbors_width(path) -> int:
    """Neighbours per image in a neighbours artifact, not counting the image itself."""
    from ccli.store import open_artifact

    with open_artifact(path, "neighbors", what="--neighbors") as art:
        k = int(art.shape("indices")[1])
        has_self = not bool(art.attr("exclude_self", True))
    return k - 1 if has_self else k


def pretrain_config(config: ScanConfig):
    """The effective `ccli pretrain` config of the chain: the recipe, its epochs, the run's seed."""
    from ccli.config import resolve_config
    from ccli.methods.pretrain import PretrainConfig, effective

    if config.pretrain_epochs < 0:
        raise BadInput(f"pretrain_epochs={config.pretrain_epochs} must be 0 (the recipe's) or more.")
    overrides = [f"seed={config.seed}", *config.pretrain_overrides]
    overrides += [f"epochs={config.pretrain_epochs}"] if config.pretrain_epochs else []
    try:
        return effective(resolve_config(PretrainConfig, "pretrain", config.pretrain_preset, overrides))
    except BadInput as exc:
        raise BadInput(f"pretrain_preset={config.pretrain_preset}: {exc}") from exc


def chain_keys(inputs: Inputs, config: ScanConfig, mining: dict) -> list[str]:
    """What else defines a run whose inputs the chain makes: the recipe's content and the mining config."""
    from ccli.config import config_dict
    from ccli.store import content_key

    keys = []
    if inputs.checkpoint is None:
        keys.append(f"pretrain:{content_key('pretrain', config_dict(pretrain_config(config)))}")
    if inputs.neighbors is None:
        keys.append(f"mining:{content_key('neighbors', mining)}")
    return keys


# ------------------------------------------------------------------------------------------
# The chain from images
# ------------------------------------------------------------------------------------------
@dataclass
class ChainSpec:
    """How a method mines its neighbours when none are given."""

    neighbors: object  # ccli.neighbors.config.NeighborsConfig
    views: str = "clean"  # `ccli embed --views`
    draws: int = 1


def prepare_inputs(ctx: RunContext, spec: ChainSpec) -> tuple[RunContext, dict]:
    """The run with --checkpoint and --neighbors filled in from the cache (computed on a miss)."""
    from ccli.methods.pretrain import embed, pretrain
    from ccli.neighbors.build import compute_neighbors

    config: ScanConfig = ctx.config
    inputs = ctx.inputs
    chain: dict = {}
    checkpoint = inputs.checkpoint
    if checkpoint is None:
        recipe = pretrain_config(config)
        log.info(f"{ctx.method}: pretraining {recipe.method}/{recipe.backbone} on {inputs.data} "
                 f"(preset {config.pretrain_preset}; cached for later runs)")
        result = pretrain(recipe, inputs.data, inputs.split, cache_dir=ctx.cache_dir)
        checkpoint, chain["pretrain_cached"] = result.checkpoint, bool(result.cached)
    neighbors = inputs.neighbors
    if neighbors is None:
        features, chain["embed_cached"] = embed(checkpoint, inputs.data, inputs.split, layer=config.embed_layer,
                                                views=spec.views, draws=spec.draws, device=ctx.device,
                                                cache_dir=ctx.cache_dir)
        mined = compute_neighbors(features, spec.neighbors, cache_dir=ctx.cache_dir, device=ctx.device)
        neighbors, chain["neighbors_cached"] = mined.path, bool(mined.cached)
        if mined.purity:
            chain["neighbor_purity"] = mined.purity
        for step in mined.steps:
            chain[f"purity_{step['step']}"] = step["purity"]
    chain["checkpoint"], chain["neighbors"] = str(checkpoint), str(neighbors)
    inputs = dataclasses.replace(inputs, checkpoint=checkpoint, neighbors=neighbors)
    return dataclasses.replace(ctx, inputs=inputs), chain


# ------------------------------------------------------------------------------------------
# Model
# ------------------------------------------------------------------------------------------
def _torch():
    import torch

    return torch


class _Heads(_torch().nn.Module):
    """H linear cluster heads on a shared feature: features [b, d] -> list of H logits [b, K]."""

    def __init__(self, dim: int, num_clusters: int, num_heads: int):
        super().__init__()
        nn = _torch().nn
        self.linears = nn.ModuleList(nn.Linear(dim, num_clusters) for _ in range(num_heads))

    def forward(self, features):
        return [linear(features) for linear in self.linears]


class MultiHeadClusterer(_torch().nn.Module):
    """Backbone + H heads (scanplus.md §6.1); `head` (a buffer, checkpointed) is the selected one."""

    def __init__(self, backbone, dim: int, num_clusters: int, num_heads: int, head_only: bool, neck=None):
        super().__init__()
        torch = _torch()
        self.backbone = backbone
        self.neck = neck if neck is not None else torch.nn.Identity()  # the pretrained projector, or nothing
        self.heads = _Heads(dim, num_clusters, num_heads)
        self.head_only = head_only
        self.register_buffer("head", torch.zeros((), dtype=torch.long))
        self.register_buffer("head_losses", torch.full((num_heads,), float("nan")))
        if head_only:
            self.backbone.requires_grad_(False)
            self.neck.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.head_only:
            self.backbone.eval()  # BN statistics of the pretrained backbone stay as they are
            self.neck.eval()
        return self

    def features(self, x):
        return self.neck(self.backbone(x))

    def forward(self, x):
        return self.heads(self.features(x))

    def assign(self, x):
        torch = _torch()
        return torch.softmax(self.heads.linears[int(self.head)](self.features(x)), dim=1)


def trainable(model: MultiHeadClusterer):
    """The optimised module: the heads alone when the backbone is frozen, else the whole model."""
    return model.heads if model.head_only else model


def head_logits(net, model: MultiHeadClusterer, x):
    """All heads' logits of x through the (possibly DDP-wrapped) trainable `net`, one call per step."""
    if model.head_only:
        with _torch().no_grad():
            features = model.features(x)
        return net(features)
    return net(x)


def with_self(table: np.ndarray) -> np.ndarray:
    """The neighbour table with each anchor appended to its own row: sampling from N_x ∪ {x} (§6.4)."""
    rows = np.arange(len(table), dtype=np.int64)[:, None]
    return np.concatenate([rows, table], axis=1)


def view(kind: str, config: ScanConfig, size: int, channels: int):
    from ccli.data.augment import ViewAug, default_cutout, eval_view, simclr_view, strong_view, weak_view

    if kind == "none":
        return eval_view(size)
    if kind == "weak":
        return weak_view(size, config.flip_p)
    if kind == "crop":
        return ViewAug(size=size, scale=tuple(config.crop_scale), flip_p=config.flip_p)
    if kind == "simclr":
        return dataclasses.replace(simclr_view(size, channels, scale=tuple(config.crop_scale)), flip_p=config.flip_p)
    return strong_view(size, config.randaug_n, config.cutout or default_cutout(size), config.flip_p)


# ------------------------------------------------------------------------------------------
# Head selection (§6.5)
# ------------------------------------------------------------------------------------------
def backbone_features(model: MultiHeadClusterer, images: np.ndarray, to_input, device, batch_size: int):
    """What the heads read [N, d] (CPU, float32) for the un-augmented images, in eval mode."""
    torch = _torch()
    was_training = model.training
    model.eval()
    parts = []
    try:
        with torch.no_grad():
            for begin in range(0, len(images), batch_size):
                batch = torch.from_numpy(np.ascontiguousarray(images[begin:begin + batch_size])).to(device)
                parts.append(model.features(to_input(batch.permute(0, 3, 1, 2))).float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(parts)


class _HeadProbabilities:
    """probs[h] = softmax(head_h(features)) computed on demand from stored backbone features."""

    def __init__(self, model: MultiHeadClusterer, features):
        self.model, self.features = model, features

    def __len__(self) -> int:
        return len(self.model.heads.linears)

    def __getitem__(self, h: int):
        torch = _torch()
        linear = self.model.heads.linears[h]
        weight, bias = linear.weight.detach().float().cpu(), linear.bias.detach().float().cpu()
        with torch.no_grad():
            return torch.softmax(self.features @ weight.T + bias, dim=1)


# ------------------------------------------------------------------------------------------
# Stages
# ------------------------------------------------------------------------------------------
def frozen_features(config: ScanConfig) -> bool:
    """Whether the heads read fixed features: a frozen backbone (eval mode) on un-augmented views.

    Then every step's features are rows of one pass over the data, which the clustering stage
    computes once (before its first step) instead of two backbone forwards per step.
    """
    return bool(config.head_only) and config.augment == "none"


def cluster_stage(setup: Setup, model: MultiHeadClusterer, table: np.ndarray) -> Stage:
    """SCAN's clustering step; after its last step it selects the head (§6.5)."""
    torch = _torch()
    from ccli.data.augment import eval_view
    from ccli.data.gpu_augment import BatchAugmenter
    from ccli.losses.scan import batch_entropy, scan_consistency

    config: ScanConfig = setup.config
    lam = config.entropy_weight
    clean = BatchAugmenter([eval_view(setup.size)], setup.mean, setup.std)
    frozen = frozen_features(config)
    cache: dict = {}

    def clean_features():
        """What the heads read for every un-augmented image, in eval mode [N, d] on the device."""
        if "features" not in cache:
            generator = torch.Generator(device=setup.device)
            cache["features"] = backbone_features(model, setup.dataset.images, lambda x: clean(x, generator)[0],
                                                  setup.device, config.eval_batch_size).to(setup.device)
        return cache["features"]

    def loss_step(net, batch, ctx):
        anchors, partners = batch["views"][0], batch["neighbor_views"][0]
        b = len(anchors)
        total, consistency, entropy = 0.0, 0.0, 0.0
        if frozen:  # the same features every epoch: read them from one pass instead of two forwards a step
            rows = torch.cat([batch["index"], batch["neighbor_index"]]).to(setup.device)
            all_logits = net(clean_features()[rows])
        else:
            all_logits = head_logits(net, model, torch.cat([anchors, partners]))
        for logits in all_logits:
            pa = torch.softmax(gather(logits[:b].float(), ctx), dim=1)
            pn = torch.softmax(gather(logits[b:].float(), ctx), dim=1)
            c, e = scan_consistency(pa, pn), batch_entropy(pa)
            total = total + c - lam * e
            consistency, entropy = consistency + c.detach(), entropy + e.detach()
        heads = len(model.heads.linears)
        return {"loss": total, "consistency": consistency / heads, "entropy": entropy / heads}

    def after_step(ctx):
        if ctx.step != ctx.total_steps - 1:
            return
        if frozen:
            features = clean_features().float().cpu()
        else:
            generator = torch.Generator(device=setup.device)
            features = backbone_features(model, setup.dataset.images, lambda x: clean(x, generator)[0], setup.device,
                                         config.eval_batch_size)
        best, losses = choose_head(config.head_selection, _HeadProbabilities(model, features), table, lam)
        model.head.fill_(best)
        model.head_losses.copy_(torch.tensor(losses))
        if len(losses) > 1:
            log.info(f"heads' SCAN losses {', '.join(f'{v:.4f}' for v in losses)}: head {best} kept")

    sampled = with_self(table) if config.include_self else table
    setup.neighbors = sampled  # what the data path draws each anchor's partner from
    v = view(config.augment, config, setup.size, setup.channels)
    return Stage("cluster", [v], loss_step, neighbor_views=[v], trainable=trainable(model), after_step=after_step)


def self_label_stage(setup: Setup, model: MultiHeadClusterer) -> Stage:
    """SCAN's self-labelling step on the selected head: weak = un-augmented image, strong = `self_label_augment`."""
    torch = _torch()
    from ccli.data.augment import eval_view
    from ccli.losses.self_label import self_label_loss

    config: ScanConfig = setup.config

    def loss_step(net, batch, ctx):
        weak, strong = batch["views"]
        b = len(weak)
        logits = head_logits(net, model, torch.cat([weak, strong]))
        chosen = logits[int(model.head)]
        loss, confident = self_label_loss(gather(chosen[:b].detach(), ctx), gather(chosen[b:], ctx),
                                          config.self_label_threshold, config.self_label_balance)
        # The other heads take no part; a zero-weighted term gives their parameters a (zero)
        # gradient so that DDP's reducer sees every parameter on every step.
        idle = sum((lg.sum() for h, lg in enumerate(logits) if h != int(model.head)), torch.zeros(()))
        return {"loss": loss + 0.0 * idle, "confident": confident}

    engine = dataclasses.replace(config.engine, epochs=config.self_label_epochs,
                                 batch_size=config.self_label_batch_size, optimizer=config.self_label_optimizer,
                                 lr=config.self_label_lr, weight_decay=config.self_label_weight_decay)
    return Stage("selflabel", [eval_view(setup.size), view(config.self_label_augment, config, setup.size, setup.channels)],
                 loss_step, engine=engine, trainable=trainable(model))


def scan_plan(setup: Setup) -> Plan:
    """The SCAN model and its stages: clustering, then self-labelling when `self_label` is on."""
    config: ScanConfig = setup.config
    if setup.neighbors is None:
        raise BadInput("SCAN trains on neighbour pairs: give --neighbors.")
    table = setup.neighbors
    neck, dim = None, int(setup.backbone.out_dim)
    if config.head_input == "projector":
        neck, dim = pretrained_projector(setup)
    model = MultiHeadClusterer(setup.backbone, dim, setup.num_clusters, config.num_heads, config.head_only, neck)
    stages = [cluster_stage(setup, model, table)]
    if config.self_label:
        stages.append(self_label_stage(setup, model))
    record = {"neighbors_per_anchor": int(table.shape[1]), "include_self": config.include_self}
    return Plan(model, stages, record=record)


def pretrained_projector(setup: Setup):
    """The `--checkpoint`'s projector MLP (stage 1's weights) and its output width."""
    from ccli.methods.pretrain import load_pretrained

    pretrained = load_pretrained(setup.run.inputs.checkpoint, what="--checkpoint")
    torch = _torch()
    with torch.no_grad():
        probe = pretrained.projector.eval()(torch.zeros(2, int(setup.backbone.out_dim)))
    return pretrained.projector.to(setup.device), int(probe.shape[1])


def summary_of(model: MultiHeadClusterer, table: np.ndarray, labels: Optional[np.ndarray]) -> dict:
    """What the final metrics line adds: the selected head, every head's loss, the neighbours' purity."""
    from ccli.neighbors.purity import neighbor_purity

    out = {"head": int(model.head), "head_losses": [float(v) for v in model.head_losses.tolist()]}
    if labels is not None and (labels >= 0).all():
        out["neighbor_purity"] = neighbor_purity(np.where(table >= 0, table, np.arange(len(table))[:, None]), labels)
    return out


def run_scan(ctx: RunContext, spec: ChainSpec):
    """The whole method: inputs from the chain when missing, the stages, and the summary."""
    from ccli.methods.trainer import train

    ctx, chain = prepare_inputs(ctx, spec)
    built: dict = {}

    def build(setup: Setup) -> Plan:
        built["table"] = setup.neighbors
        plan = scan_plan(setup)
        built["model"] = plan.model
        return plan

    prediction = train(ctx, build)
    if prediction is not None:
        prediction.summary.update(chain)
        prediction.summary.update(summary_of(built["model"], built["table"], ctx.inputs.targets))
    return prediction
