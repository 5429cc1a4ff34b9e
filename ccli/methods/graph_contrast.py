"""Graph contrastive clustering's shared parts (GCC as CCTC builds on it; cctc-and-cdec.md §5, §7, §8.1–8.2, §12).

What gcc and cctc compose, below both method modules:

- `GraphConfig`: GCC's keys on top of the two-head family's (tau = τ_z, tau_c = τ_y,
  entropy_weight = λ of L_au, instance_weight / cluster_weight, the SimCLR warm-up length,
  the kNN graph's k, refresh period, feature-memory length and the RGC positives);
- `GraphModel`: the two-head network plus the per-sample feature memory (the last
  `memory_size` view-2 embeddings of every sample, §7.3), the (k+1)-NN table (column 0
  usually the sample itself) and the node weights ω_j = √(3/|𝒩(j)|) — all buffers, so a
  checkpoint carries them and `--resume` continues exactly;
- `NeighbourImages`: the RGC positives (the first `rgc_num_pos` table columns) and the AGC
  neighbour (a uniform column of the row) loaded into the batch and augmented (§8.1: a random
  batch holds almost none of an anchor's neighbours);
- `graph_stages(setup, model, …)`: the SimCLR warm-up stage and the graph stage(s), whose
  `before_epoch` rebuilds the graph from the memory every `graph_every` epochs (the first
  time from the warm-up's memory) unless a `--neighbors`/`--graph` table was given, in which
  case that table is the graph for the whole run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Literal, Optional

import numpy as np
import torch
from torch import nn

from ccli.config import section
from ccli.engine.loop import EngineConfig
from ccli.errors import BadInput
from ccli.methods.trainer import Setup, Stage, gather
from ccli.methods.two_heads import TwoHeadConfig, global_view, two_head_model


@dataclass
class GraphConfig(TwoHeadConfig):
    """GCC's defaults with CCTC's stated values (§11); presets record each value's source."""

    backbone: str = "resnet18-cifar"
    image_size: Optional[int] = None
    engine: EngineConfig = section(lambda: EngineConfig(
        epochs=1000, batch_size=256, optimizer="sgd", lr=0.4, weight_decay=1e-4, momentum=0.9, schedule="cosine",
        final_lr=0.4 * 0.1 ** 3, knn_every=10, eval_every=5,
    ))
    crop_scale: tuple[float, float] = (0.2, 1.0)
    flip_p: float = 0.5
    jitter_strength: float = 0.5  # ColorJitter(0.4, 0.4, 0.4, 0.1) = 0.8s, 0.2s with s = 0.5
    tau: float = 0.1  # τ_z
    tau_c: float = 1.0  # τ_y
    entropy_weight: float = 0.5  # λ of L_au
    instance_weight: float = 1.0
    cluster_weight: float = 1.0
    bn_per_view: bool = False  # one backbone pass over views and neighbour images
    simclr_epochs: int = 50  # S0: SimCLR warm-up epochs (the feature memory fills; no graph, no cluster loss)
    knn: int = 5  # k; the table keeps k + 1 columns (the sample itself usually first)
    graph_every: int = 5  # epochs between graph rebuilds from the feature memory
    memory_size: int = 4  # view-2 embeddings kept per sample for the graph
    rgc_num_pos: int = 3  # the first table columns used as RGC positives
    rgc_exclude_self: bool = False
    clu_view2: Literal["neighbor", "augment"] = "neighbor"
    stage_schedule: Literal["last", "per_stage"] = "last"  # last: earlier stages at constant lr


def check_graph_config(config: GraphConfig) -> None:
    if config.simclr_epochs < 0:
        raise BadInput(f"simclr_epochs={config.simclr_epochs} must be 0 or more.")
    for key in ("knn", "graph_every", "memory_size", "rgc_num_pos"):
        if getattr(config, key) < 1:
            raise BadInput(f"{key}={getattr(config, key)} must be at least 1.")
    if config.rgc_num_pos > config.knn + 1:
        raise BadInput(f"rgc_num_pos={config.rgc_num_pos} exceeds the knn + 1 = {config.knn + 1} table columns.")
    if config.clu_view2 not in ("neighbor", "augment"):
        raise BadInput(f"clu_view2={config.clu_view2} must be neighbor or augment.")
    if config.stage_schedule not in ("last", "per_stage"):
        raise BadInput(f"stage_schedule={config.stage_schedule} must be last or per_stage.")
    for key in ("tau", "tau_c"):
        if getattr(config, key) <= 0:
            raise BadInput(f"{key}={getattr(config, key)} must be positive.")


# ------------------------------------------------------------------------------------------
# Graph from features
# ------------------------------------------------------------------------------------------
def knn_table(features: torch.Tensor, k: int, chunk: int = 4096) -> torch.Tensor:
    """Exact inner-product top-(k+1) of every row over all rows (Faiss IndexFlatIP's answer), [N, k+1] int64."""
    feats = features.float()
    out = torch.empty((len(feats), k + 1), dtype=torch.int64, device=feats.device)
    for begin in range(0, len(feats), chunk):
        sims = feats[begin : begin + chunk] @ feats.t()
        out[begin : begin + chunk] = sims.topk(k + 1, dim=1).indices
    return out


def node_weights(table: torch.Tensor, scale: float = 3.0) -> torch.Tensor:
    """GCC's Laplacian stand-in (§7.3): ω_j = √(scale / |𝒩(j)|), 𝒩(j) = row j ∪ {i : j ∈ row i} (j included)."""
    t = table.detach().cpu().numpy().astype(np.int64)
    n = len(t)
    rows = np.repeat(np.arange(n, dtype=np.int64), t.shape[1])
    cols = t.reshape(-1)
    a = np.concatenate([rows, cols, np.arange(n)])
    b = np.concatenate([cols, rows, np.arange(n)])
    pairs = np.unique(a * n + b)
    size = np.bincount(pairs // n, minlength=n).astype(np.float64)
    return torch.from_numpy(np.sqrt(scale / size).astype(np.float32)).to(table.device)


def table_with_self(neighbors: np.ndarray, k: int) -> np.ndarray:
    """A −1-padded [N, q] neighbour table (no self) as GCC's [N, k+1] rows: the sample, then ≤ k neighbours (padding → self)."""
    n = len(neighbors)
    own = np.arange(n, dtype=np.int64)[:, None]
    body = np.asarray(neighbors, dtype=np.int64)[:, :k]
    if body.shape[1] < k:
        body = np.concatenate([body, np.full((n, k - body.shape[1]), -1, dtype=np.int64)], axis=1)
    table = np.concatenate([own, body], axis=1)
    return np.where(table < 0, own, table)


class GraphModel(nn.Module):
    """The two-head network `net` (what the optimiser trains) and GCC's graph state as buffers."""

    def __init__(self, net: nn.Module, num_samples: int, feature_dim: int, memory_size: int, k: int):
        super().__init__()
        self.net = net
        self.backbone = net.backbone
        self.register_buffer("memory", torch.zeros((num_samples, memory_size, feature_dim), dtype=torch.float16))
        self.register_buffer("memory_filled", torch.zeros(num_samples, dtype=torch.long))
        own = torch.arange(num_samples, dtype=torch.int64)[:, None].repeat(1, k + 1)
        self.register_buffer("table", own)
        self.register_buffer("omega", torch.ones(num_samples, dtype=torch.float32))
        self.register_buffer("graph_built", torch.zeros((), dtype=torch.long))

    def assign(self, x):
        return self.net.assign(x)

    @torch.no_grad()
    def remember(self, index: torch.Tensor, v: torch.Tensor) -> None:
        """Push view-2 embeddings into each sample's FIFO (GCC's AugFeat)."""
        index = index.to(self.memory.device)
        slot = self.memory_filled[index] % self.memory.shape[1]
        self.memory[index, slot] = v.detach().to(self.memory.dtype)
        self.memory_filled[index] += 1

    @torch.no_grad()
    def memory_features(self) -> torch.Tensor:
        """Each sample's mean stored embedding (not re-normalised, as GCC)."""
        count = self.memory_filled.clamp(max=self.memory.shape[1]).clamp_min(1).float()
        slots = torch.arange(self.memory.shape[1], device=self.memory.device)
        used = (slots[None, :] < self.memory_filled[:, None]).float()
        return (self.memory.float() * used[:, :, None]).sum(1) / count[:, None]

    @torch.no_grad()
    def set_graph(self, table: torch.Tensor) -> None:
        self.table.copy_(table.to(self.table.device))
        self.omega.copy_(node_weights(self.table))
        self.graph_built += 1

    @torch.no_grad()
    def rebuild_graph(self) -> None:
        self.set_graph(knn_table(self.memory_features(), self.table.shape[1] - 1))


def neighbor_purity(table: torch.Tensor, labels: np.ndarray, columns: int) -> Optional[float]:
    """Diagnostic only (labels never feed back): share of the first non-self table entries with the anchor's class."""
    if labels is None or (np.asarray(labels) < 0).all():
        return None
    labels = np.asarray(labels)
    t = table.cpu().numpy()[:, :columns]
    own = np.arange(len(t))[:, None]
    others = t != own
    same = labels[t] == labels[:, None]
    return float((same & others).sum() / max(1, others.sum()))


class NeighbourImages:
    """Augmented images of table entries for a batch, drawn from the uint8 dataset on the device."""

    def __init__(self, images_nhwc: np.ndarray, view, mean, std, device, seed: int):
        from ccli.data.gpu_augment import BatchAugmenter

        self.device = torch.device(device)
        tensor = torch.from_numpy(np.ascontiguousarray(images_nhwc)).permute(0, 3, 1, 2).contiguous()
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            self.images = tensor.pin_memory() if tensor.numel() > 0.25 * free else tensor.to(self.device)
        else:
            self.images = tensor
        self.augmenter = BatchAugmenter([view], mean, std)
        self.seed = int(seed)

    def generator(self, ctx) -> torch.Generator:
        from ccli.engine.datapath import mix_seed

        return torch.Generator(device=self.device).manual_seed(mix_seed(self.seed, ctx.epoch, ctx.step, ctx.dist.rank, 17))

    def cpu_generator(self, ctx) -> torch.Generator:
        from ccli.engine.datapath import mix_seed

        return torch.Generator().manual_seed(mix_seed(self.seed, ctx.epoch, ctx.step, ctx.dist.rank, 19))

    def __call__(self, index: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        x = self.images[index.to(self.images.device)].to(self.device, non_blocking=True)
        return self.augmenter(x, gen)[0]


# ------------------------------------------------------------------------------------------
# Stages
# ------------------------------------------------------------------------------------------
def _gather_rows(tensor, ctx):
    from ccli.engine.ddp import all_gather_cat

    return all_gather_cat(tensor, ctx.dist)


def warmup_step(model: GraphModel, config: GraphConfig):
    """S0 (§8.1 warm-up form): L^warm on the two views; the memory keeps view 2."""
    from ccli.losses.gcc import warm_instance_loss

    def loss_step(net, batch, ctx):
        hs, _ = net(batch["views"])
        u, v = gather(hs[0], ctx), gather(hs[1], ctx)
        model.remember(_gather_rows(batch["index"].to(u.device), ctx), v)
        loss = warm_instance_loss(u, v, config.tau)
        return {"loss": loss, "instance": loss.detach()}

    return loss_step


def graph_step(model: GraphModel, config: GraphConfig, images: NeighbourImages,
               extra: Optional[Callable] = None):
    """S1/S2: w_inst·L^gcc_InfoNCE + w_clu·L_clu (+ `extra(index, u, p1, ctx)` → dict of weighted terms)."""
    from ccli.losses.gcc import agc_cluster_loss, rgc_loss

    positives = config.rgc_num_pos

    def loss_step(net, batch, ctx):
        index = batch["index"].to(model.table.device)
        rows = model.table[index]  # [b, k+1]
        pos = rows[:, :positives]
        gen = images.generator(ctx)
        column = torch.randint(0, rows.shape[1], (len(rows),), generator=images.cpu_generator(ctx))
        agc = rows[torch.arange(len(rows), device=rows.device), column.to(rows.device)]
        extra_views = [images(pos[:, t], gen) for t in range(positives)]
        if config.clu_view2 == "neighbor":
            extra_views.append(images(agc, gen))
        hs, ps = net(list(batch["views"]) + extra_views)
        u, v = gather(hs[0], ctx), gather(hs[1], ctx)
        omega = gather(model.omega[pos].to(u.device), ctx)  # [B, T]
        r = torch.stack([gather(h, ctx) for h in hs[2 : 2 + positives]], dim=1) * omega[:, :, None]
        instance = rgc_loss(u, v, r, omega, config.tau, config.rgc_exclude_self)
        p1 = gather(ps[0], ctx)
        p2 = gather(ps[2 + positives] if config.clu_view2 == "neighbor" else ps[1], ctx)
        cluster = agc_cluster_loss(p1, p2, config.tau_c, config.entropy_weight)
        loss = config.instance_weight * instance + config.cluster_weight * cluster
        out = {"instance": instance.detach(), "cluster": cluster.detach()}
        full_index = _gather_rows(batch["index"].to(u.device), ctx)
        if extra is not None:
            terms = extra(full_index, u, p1, ctx)
            loss = loss + terms.pop("loss")
            out.update(terms)
        if not model.graph_fixed:
            model.remember(full_index, v)
        out["loss"] = loss
        return out

    return loss_step


def graph_stages(setup: Setup, model: GraphModel, plan: list[tuple[str, int, Optional[Callable]]],
                 epoch_hook: Optional[Callable] = None) -> list[Stage]:
    """One Stage per (name, epochs, extra) of `plan` with epochs > 0; the name "warmup" is S0 (§12.2).

    A graph stage's before_epoch rebuilds the graph from the memory at absolute epochs
    simclr_epochs, simclr_epochs + graph_every, … (a fixed --neighbors/--graph table is never
    rebuilt), then calls `epoch_hook(stage, absolute_epoch, ctx)` (cctc's label snapshot).
    `extra(index, u, p1, ctx)` returns {"loss": weighted extra terms, …logged scalars}.
    """
    from ccli import log

    config: GraphConfig = setup.config
    view = global_view(config, setup.size, setup.channels)
    images = NeighbourImages(setup.dataset.images, view, setup.mean, setup.std, setup.device, config.seed)
    named = [entry for entry in plan if entry[1] > 0]
    stages, offset = [], 0
    for number, (name, epochs, extra) in enumerate(named):
        engine = dataclasses.replace(config.engine, epochs=epochs)
        if config.stage_schedule == "last" and number < len(named) - 1:
            engine = dataclasses.replace(engine, schedule="constant")

        def before_epoch(ctx, name=name, start=offset):
            from ccli.engine.ddp import broadcast_from_main

            absolute = start + ctx.epoch - 1  # 0-based epoch of the whole run
            if name == "warmup":
                return
            if not model.graph_fixed and (absolute - config.simclr_epochs) % config.graph_every == 0:
                model.rebuild_graph()
                broadcast_from_main(model.table, ctx.dist)
                model.omega.copy_(node_weights(model.table))
                purity = neighbor_purity(model.table, setup.dataset.labels, config.rgc_num_pos)
                if purity is not None:
                    log.debug(f"graph rebuilt before epoch {absolute}: neighbour purity {purity:.3f}")
            if epoch_hook is not None:
                epoch_hook(name, absolute, ctx)

        step = warmup_step(model, config) if name == "warmup" else graph_step(model, config, images, extra)
        stages.append(Stage(name, [view, view], step, engine=engine, trainable=model.net, before_epoch=before_epoch))
        offset += epochs
    return stages


def graph_model(setup: Setup) -> GraphModel:
    """The two-head network with GCC's graph state; a `--neighbors`/`--graph` table is the fixed graph."""
    config: GraphConfig = setup.config
    net = two_head_model(setup)
    model = GraphModel(net, len(setup.dataset), config.inst_dim, config.memory_size, config.knn)
    model.graph_fixed = setup.neighbors is not None
    if model.graph_fixed:
        model.set_graph(torch.from_numpy(table_with_self(setup.neighbors, config.knn)))
    return model
