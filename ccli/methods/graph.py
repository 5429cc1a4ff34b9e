"""graph (thesis 001, Ch. 4; selfpaced-and-graph.md §4): graph-based instance–cluster contrastive clustering.

A convolutional autoencoder (ccli.models.autoencoder) with a self-expression layer: the codes Z
of a set of samples are written as CZ (rows as samples, diag(C) = 0, G2) under
L_self = ‖C‖ + λ‖Z − CZ‖²_F (Eq. 4.2, ccli.losses.self_expressive), and A = C + Cᵀ is the graph
(signed, G3). Two heads on Z share one FC + ReLU (G5): the instance head (128-d) contrasts each
sample with the k largest entries of its row of A (Eq. 4.4–4.6), the softmax cluster head
contrasts the columns of Y with those of Y′, each sample's strongest neighbour's row (Eq. 4.7).
L = L_re + L_self + L_ins + L_clu (Eq. 4.8); labels are the argmax of the cluster head.

Stages of one run: `pretrain` (reconstruction, Alg. 4.1 step 1), `warmup` (L_gra = L_re + L_self
only for se_warmup_epochs, so that A means something before it selects pairs, §4.6), `joint`.

The N×N C of the thesis does not scale (§4.6); `se_mode` chooses how C is held:
- `full`: one learned N×N C, every step the whole dataset (refused above `se_max_n`);
- `chunk`: the data are split once (seeded) into ⌊N / chunk_size⌋ chunks; each has its own learned
  block of a block-diagonal C and each step trains on one chunk. `full` is `chunk` with one chunk;
- `closed`: per shuffled mini-batch, the exact Frobenius minimiser C = λZ(I_d + λZᵀZ)⁻¹Zᵀ with its
  diagonal zeroed (never an N×N matrix, nothing learned).
A learned block has its own Adam (se_lr) and `se_inner_steps` C-only steps per visit on the
detached codes, because each block is visited once per epoch; the network's step then uses the
block as a constant, so L_self shapes Z. Without `--graph` the pairs come from A; with `--graph`
(a `ccli graph --self-expressive` artifact, whose key enters the run key through the registry)
A on each step's samples is the artifact's and the warm-up is skipped.

`head_lr_scale` (PROPOSED, not in the thesis; 1.0 = its one rate) trains the shared trunk and both heads
of the joint stage that many times faster than the autoencoder (`head_groups`): a few steps per epoch on
small data leave freshly initialised heads far behind a pretrained encoder at one rate.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np

from ccli.config import section
from ccli.engine.loop import EngineConfig
from ccli.errors import BadInput
from ccli.methods.registry import Inputs, Prediction, RunContext
from ccli.methods.autoencoding import autoencoder_key_inputs, check_autoencoder, latent_dim, load_ae_checkpoint, view_of
from ccli.methods.trainer import Plan, Setup, Stage, TrainConfig, check_common, train


SE_MODES = ("full", "chunk", "closed")


@dataclass
class Config(TrainConfig):
    backbone: str = "cae32"  # cae28 | cae32 | cae96 (§4.7: CIFAR 32 px, STL 96 px; 28 px the DEC CAE)
    image_size: Optional[int] = 32
    latent_dim: int = 0  # 0: the backbone's (512 for cae32/cae96, §4.7)
    bottleneck_act: Literal["none", "relu"] = "relu"  # thesis §4.2.1: ReLU activations everywhere
    ae_checkpoint: str = ""  # a pretrain-stage checkpoint of a selfpaced/graph run: skip pretraining
    engine: EngineConfig = section(lambda: EngineConfig(
        epochs=150, batch_size=1000,  # thesis §4.3.3: 150 epochs; batch not stated → 1000 (§4.8)
        optimizer="adam", lr=1.0e-4, weight_decay=0.0, schedule="constant",  # thesis §4.3.3
        knn_every=0, eval_every=10,
    ))
    pretrain_epochs: int = 100  # §4.2: not stated → 100 (PROPOSED)
    pretrain_lr: float = 1.0e-3
    pretrain_batch_size: int = 256
    # self-expression
    se_mode: Literal["full", "chunk", "closed"] = "chunk"
    se_max_n: int = 20000  # full mode: the largest N (an N×N C and its Adam moments)
    chunk_size: int = 1000
    se_inner_steps: int = 5
    se_lr: float = 1.0e-3
    c_init: float = 1.0e-8  # DSC-Net's initialisation (G8)
    c_norm: Literal["fro", "l1"] = "fro"  # G1
    lam: float = 1.0  # λ in Eq. 4.2
    se_warmup_epochs: int = 20  # G8
    affinity: Literal["signed", "abs"] = "signed"  # G3
    # contrast
    pos_rule: Literal["topk", "adaptive"] = "topk"  # G6
    k: int = 5  # thesis §4.3.3
    tau1: float = 0.5
    tau2: float = 1.0
    inst_dim: int = 128
    shared_trunk: bool = True  # G5
    entropy_weight: float = 0.0  # G10
    w_re: float = 1.0
    w_self: float = 1.0
    w_ins: float = 1.0
    w_clu: float = 1.0
    # The joint stage's rate for the shared trunk and both heads, as a multiple of engine.lr (the
    # autoencoder keeps engine.lr). 1.0: the thesis's one rate for every parameter (§4.3.3).
    head_lr_scale: float = 1.0
    # PROPOSED departures from Ch. 4, which uses no augmentation (§4.1); both off = the thesis's path.
    pretrain_augment: bool = False  # true: denoising pretraining, the clean image reconstructed from an augmented view (Eq. 2.4)
    instance_augment: bool = False  # true: L_ins on two augmented views; positives = the other view and A's top-k in both views
    # PROPOSED: the codes self-expression sees. raw: Z (Eq. 4.2); centred_l2: each batch's codes centred and
    # L2-normalised, so C compares directions around the batch mean (A's top-5 purer on denoising-AE codes).
    se_codes: Literal["raw", "centred_l2"] = "raw"
    # the augmentation of those two keys (spec §3.7, the selfpaced recipe for grayscale: crop + blur)
    crop_scale: tuple[float, float] = (0.5, 1.0)
    flip_p: float = 0.0
    jitter_p: float = 0.0
    jitter_strength: float = 1.0
    gray_p: float = 0.0
    blur_p: float = 0.5
    intensity_p: float = 0.0


def _chunk_parts(n: int, config: Config) -> list[np.ndarray]:
    """The fixed partition of the learned modes: one part (full) or ⌊N / chunk_size⌋ seeded parts (chunk)."""
    if config.se_mode == "full":
        return [np.arange(n)]
    perm = np.random.default_rng(config.seed + 104729).permutation(n)
    return [np.sort(p) for p in np.array_split(perm, max(1, n // config.chunk_size))]


def validate(inputs: Inputs, config: Config, num_clusters: int) -> None:
    n = inputs.num_samples
    if config.se_mode == "full" and n > config.se_max_n:
        raise BadInput(f"se_mode=full holds an N×N self-expression matrix, but --data {inputs.data} has {n:,} images, "
                       f"more than se_max_n={config.se_max_n:,}; use se_mode=chunk or se_mode=closed.")
    if config.se_mode == "chunk" and not 2 <= config.chunk_size <= n:
        raise BadInput(f"chunk_size={config.chunk_size} must be between 2 and the {n:,} images.")
    if config.k < 1:
        raise BadInput(f"k={config.k} must be at least 1.")
    for key in ("lam", "tau1", "tau2", "se_lr"):
        if getattr(config, key) <= 0:
            raise BadInput(f"{key}={getattr(config, key)} must be positive.")
    lo, hi = config.crop_scale
    if not 0 < lo <= hi <= 1:
        raise BadInput(f"crop_scale={list(config.crop_scale)} must be two area fractions with 0 < low ≤ high ≤ 1.")
    for key in ("flip_p", "jitter_p", "gray_p", "blur_p", "intensity_p"):
        if not 0 <= getattr(config, key) <= 1:
            raise BadInput(f"{key}={getattr(config, key)} must be a probability between 0 and 1.")
    if not config.head_lr_scale > 0:
        raise BadInput(f"head_lr_scale={config.head_lr_scale:g} must be > 0: it multiplies engine.lr for the heads.")
    for key in ("pretrain_epochs", "se_warmup_epochs", "se_inner_steps"):
        if getattr(config, key) < 0:
            raise BadInput(f"{key}={getattr(config, key)} must be 0 or more.")
    if config.pretrain_batch_size < 1 or config.pretrain_batch_size > n:
        raise BadInput(f"pretrain_batch_size={config.pretrain_batch_size} must be between 1 and the {n:,} images.")
    check_autoencoder(inputs, config)
    check_common(inputs, config)


def key_inputs(inputs: Inputs, config: Config) -> list[str]:
    return autoencoder_key_inputs(config)


def closed_coefficients(z, lam: float):
    """C = λZ(I_d + λZᵀZ)⁻¹Zᵀ (rows as samples): the minimiser of ‖C‖²_F + λ‖Z − CZ‖²_F, diagonal then zeroed (§4.6)."""
    import torch

    z = z.double()
    d = z.shape[1]
    c = lam * z @ torch.linalg.solve(torch.eye(d, dtype=z.dtype, device=z.device) + lam * z.t() @ z, z.t())
    c.fill_diagonal_(0.0)
    return c


def head_groups(model, scale: float) -> list[dict]:
    """The joint stage's optimiser groups: the autoencoder at engine.lr, the shared trunk, the cluster trunk
    and both heads at `scale` × engine.lr. Every parameter once (the shared trunk is the cluster trunk); the
    self-expression blocks are buffers with their own Adam (train_block), so they are in neither group."""
    autoencoder = list(model.ae.parameters())
    seen = {id(p) for p in autoencoder}
    heads = []
    for part in (model.trunk, model.cluster_trunk, model.instance, model.cluster):
        for p in part.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                heads.append(p)
    return [{"params": autoencoder}, {"params": heads, "lr_scale": scale}]


def _modules():
    import torch
    from torch import nn

    class GraphNet(nn.Module):
        """Autoencoder (encoder = `.backbone`), the shared trunk, both heads and the learned C blocks (buffers)."""

        def __init__(self, ae, num_clusters: int, inst_dim: int, shared: bool, blocks: int, side: int, init: float):
            super().__init__()
            self.backbone = ae.encoder
            self.ae = ae
            d = ae.encoder.out_dim
            self.trunk = nn.Sequential(nn.Linear(d, d), nn.ReLU())
            self.cluster_trunk = self.trunk if shared else nn.Sequential(nn.Linear(d, d), nn.ReLU())
            self.instance = nn.Linear(d, inst_dim)
            self.cluster = nn.Linear(d, num_clusters)
            # Learned modes: one B×B block per chunk, with its Adam moments and step count.
            self.register_buffer("coefficients", torch.full((blocks, side, side), float(init)))
            self.register_buffer("c_m", torch.zeros(blocks, side, side))
            self.register_buffer("c_v", torch.zeros(blocks, side, side))
            self.register_buffer("c_steps", torch.zeros(blocks, dtype=torch.long))

        def heads(self, z):
            return self.instance(self.trunk(z)), torch.softmax(self.cluster(self.cluster_trunk(z)), dim=1)

        def forward(self, x, extra=None):
            """`extra` (instance_augment): more images through the encoder and the instance head only."""
            h, rec, target = self.ae(x)
            inst, y = self.heads(h)
            if extra is None:
                return h, rec, target, inst, y
            return h, rec, target, inst, y, self.instance(self.trunk(self.backbone(extra)))

        def assign(self, x):
            return self.heads(self.backbone(x))[1]

    return GraphNet


def build(setup: Setup) -> Plan:
    import torch
    import torch.nn.functional as F

    from ccli.data.augment import eval_view
    from ccli.data.gpu_augment import BatchAugmenter
    from ccli.losses import graph_contrast as G
    from ccli.losses.cluster import entropy_regulariser
    from ccli.losses.self_expressive import self_expression_loss
    from ccli.engine.datapath import mix_seed
    from ccli.models.autoencoder import build_autoencoder

    config: Config = setup.config
    size, c, k = setup.size, setup.channels, setup.num_clusters
    n = len(setup.dataset)
    learned = config.se_mode in ("full", "chunk")
    parts = _chunk_parts(n, config) if learned else []
    side = max(len(p) for p in parts) if parts else 1
    torch.manual_seed(config.seed)
    ae = build_autoencoder(config.backbone, c, size, latent_dim(config), config.bottleneck_act)
    GraphNet = _modules()
    model = GraphNet(ae, k, config.inst_dim, config.shared_trunk, len(parts) if parts else 1, side, config.c_init)
    if not learned:  # nothing to hold: keep the buffers tiny
        for name in ("coefficients", "c_m", "c_v"):
            setattr(model, name, torch.zeros(1, 1, 1))
    clean, augmented = eval_view(size), view_of(config, size, c)
    # The joint stage's views: the clean one (A, L_re, L_self, L_clu) and, with instance_augment, two augmented ones.
    joint_views = [clean, augmented, augmented] if config.instance_augment else [clean]
    to_input = BatchAugmenter(joint_views, setup.mean, setup.std)
    images = torch.from_numpy(np.ascontiguousarray(setup.dataset.images)).permute(0, 3, 1, 2)
    cache: dict = {}
    graph = None
    if setup.run.inputs.graph is not None:
        from ccli.store import open_artifact

        with open_artifact(setup.run.inputs.graph, "graph", what="--graph") as art:
            import scipy.sparse as sp

            graph = sp.csr_matrix((art.read("data"), art.read("indices"), art.read("indptr")), shape=(n, n))

    def members_of(batch, ctx) -> "torch.Tensor":
        """The samples of this step: its chunk (learned modes; one per step, in a seeded order per epoch) or the batch."""
        if not learned:
            return batch["index"]
        order = np.random.default_rng(config.seed * 7 + ctx.epoch).permutation(len(parts))
        return torch.from_numpy(parts[order[(ctx.step % ctx.steps_per_epoch) % len(parts)]])

    def inputs_of(batch, members, ctx) -> list:
        if not learned:
            return list(batch["views"])
        if "images" not in cache:
            cache["images"] = images.to(setup.device)
        gen = torch.Generator(device=setup.device).manual_seed(mix_seed(config.seed, ctx.epoch, ctx.step, 23))
        return list(to_input(cache["images"][members.to(setup.device)], gen))

    def block_index(members) -> int:
        for number, part in enumerate(parts):
            if len(part) == len(members) and part[0] == int(members[0]) and part[-1] == int(members[-1]):
                return number
        raise RuntimeError("a chunk that is not part of the partition")

    def train_block(number: int, z) -> "torch.Tensor":
        """se_inner_steps Adam steps on this chunk's block (diagonal masked) for the detached codes; returns the block."""
        b = len(z)
        off = 1.0 - torch.eye(b, device=z.device, dtype=z.dtype)
        w = model.coefficients[number, :b, :b]
        m, v = model.c_m[number, :b, :b], model.c_v[number, :b, :b]
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        for _ in range(config.se_inner_steps):
            leaf = w.detach().clone().requires_grad_(True)
            with torch.enable_grad():
                loss = self_expression_loss(leaf * off, z, config.lam, config.c_norm)
                (grad,) = torch.autograd.grad(loss, leaf)
            model.c_steps[number] += 1
            t = int(model.c_steps[number])
            m.mul_(beta1).add_(grad, alpha=1 - beta1)
            v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            step = config.se_lr * math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
            w.sub_(step * m / (v.sqrt() + eps))
        return (w * off).detach()

    def se_input(z):
        """The codes of L_self and of C (se_codes): Z itself, or centred and L2-normalised per batch."""
        if config.se_codes == "centred_l2":
            return F.normalize(z - z.mean(0, keepdim=True), dim=1)
        return z

    def coefficients_for(members, z):
        if learned:
            return train_block(block_index(members), z.detach().float())
        return closed_coefficients(z.detach(), config.lam).to(z.dtype)

    def affinity_for(members, coeffs):
        if graph is not None:
            idx = members.numpy()
            a = torch.from_numpy(graph[idx][:, idx].toarray()).to(coeffs.device, coeffs.dtype)
            return a, a != 0
        return G.affinity(coeffs, config.affinity), None

    def make_step(contrast: bool):
        def step(net, batch, ctx):
            members = members_of(batch, ctx)
            views = inputs_of(batch, members, ctx)
            if contrast and config.instance_augment:  # the augmented views skip the decoder
                z, rec, target, inst, y, inst_aug = net(views[0], torch.cat(views[1:]))
            else:
                z, rec, target, inst, y = net(views[0])
            recon = F.mse_loss(rec, target)
            codes = se_input(z)
            coeffs = coefficients_for(members, codes)
            selfexp = self_expression_loss(coeffs.to(z.dtype), codes, config.lam, config.c_norm)
            loss = config.w_re * recon + config.w_self * selfexp
            out = {"reconstruction": recon.detach(), "self_expression": selfexp.detach()}
            if contrast:
                a, valid = affinity_for(members, coeffs)
                if config.pos_rule == "adaptive" and valid is None:
                    pos = G.adaptive_positives(a, config.k)
                else:
                    pos = G.topk_positives(a, config.k, valid)
                if config.instance_augment:
                    instance = G.two_view_instance_loss(inst_aug[: len(z)], inst_aug[len(z):], pos, config.tau1)
                else:
                    instance = G.graph_instance_loss(inst, pos, config.tau1)
                neighbour = G.strongest_neighbour(a if valid is None else a.masked_fill(~valid, float("-inf")))
                cluster = G.graph_cluster_loss(y, y[neighbour], config.tau2)
                if config.entropy_weight:
                    cluster = cluster + config.entropy_weight * entropy_regulariser(y)
                loss = loss + config.w_ins * instance + config.w_clu * cluster
                out.update(instance=instance.detach(), cluster=cluster.detach())
            return {"loss": loss, **out}

        return step

    def pretrain_step(net, batch, ctx):
        if config.pretrain_augment:  # denoising: reconstruct the clean view from the augmented one
            _, rec, _, _, _ = net(batch["views"][1])
            return {"loss": F.mse_loss(rec, batch["views"][0])}
        _, rec, target, _, _ = net(batch["views"][0])
        return {"loss": F.mse_loss(rec, target)}

    base = config.engine
    batch = n if config.se_mode == "full" else config.chunk_size if learned else base.batch_size
    joint_engine = dataclasses.replace(base, batch_size=batch)
    stages = []
    if config.ae_checkpoint:
        load_ae_checkpoint(model.ae, config, c, size)
    elif config.pretrain_epochs:
        stages.append(Stage("pretrain", [clean, augmented] if config.pretrain_augment else [clean], pretrain_step,
                            engine=dataclasses.replace(
            base, epochs=config.pretrain_epochs, lr=config.pretrain_lr, batch_size=config.pretrain_batch_size,
            eval_every=0)))
    if config.se_warmup_epochs and graph is None:
        stages.append(Stage("warmup", [clean], make_step(False),
                            engine=dataclasses.replace(joint_engine, epochs=config.se_warmup_epochs, eval_every=0)))
    stages.append(Stage("joint", joint_views, make_step(True), engine=joint_engine,
                        param_groups=head_groups(model, config.head_lr_scale)))
    return Plan(model, stages, record={"latent_dim": latent_dim(config), "chunks": len(parts),
                                       "graph_input": graph is not None})


def run(ctx: RunContext) -> Prediction:
    return train(ctx, build)
