"""cdec (seed 002): the spec's PROPOSED reading of an abstract-only paper, "CC + IDEC on a shared embedding".

Seed 002 (Zhou et al., Computer and Modernization 2026) is an abstract: instance- and
cluster-level contrast, an autoencoder reconstruction loss and "the constraints of the deep
embedding representation", jointly optimised. It gives no equation, architecture or number.
Everything concrete here is the spec's PROPOSED formulation (cctc-and-cdec.md §17.2–17.3):

    h = f(x)                  backbone
    e = g_E(h)                embedding head Linear(d, 512)-BN-ReLU-Linear(512, d_e)
    z = norm(g_I(e))          CC's instance head on e        → L_ins (NT-Xent, τ_I)
    c = softmax(g_C(e))       CC's cluster head on e         → L_clu (column NT-Xent, τ_C, + entropy)
    x̂ = g_D(e)                decoder (ccli.models.decoder)   → L_rec (MSE to the same augmented view)
    q = StudentT(e; μ)        DEC soft assignment, view 1     → L_KL = KL(P ‖ Q)

    L = L_ins + L_clu + w_rec·L_rec + w_kl·L_KL

Stage `embed` (embed_epochs): w_kl = 0, the embedding is learnt first. Stage `cluster`: at its
first epoch the centres μ are initialised by k-means on e over the whole dataset (eval
transform; `mu_init: head` takes the mean e of each cluster-head argmax instead, `centers:`
a [K, d_e] file), then P is recomputed from the whole dataset every `target_every` epochs
(DEC Eq. 3) and μ is trained by the same optimiser. μ, P and the refresh epoch are part of
the model's state, so a resumed run continues with the same centres and target.
Labels: argmax of the cluster head (`predict: q` uses argmax q). Ablations: `w_rec=0`,
`w_kl=0`. Results are "ccli cdec (proposed interpretation of 002)", never a reproduction.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import numpy as np

from ccli import log
from ccli.errors import BadInput
from ccli.methods.registry import Inputs, Prediction, RunContext
from ccli.methods.trainer import Plan, Setup, Stage, check_common, gather, predict_probabilities, train
from ccli.methods.two_heads import TwoHeadConfig, global_view


@dataclass
class Config(TwoHeadConfig):
    """The family's (CC's) keys plus the PROPOSED terms of spec §17.2–17.3."""

    embed_dim: int = 128  # d_e (spec §17.3)
    embed_hidden: int = 512  # g_E: Linear(d, 512)-BN-ReLU-Linear(512, d_e) (spec §17.2)
    inst_hidden: int = 128  # g_I: Linear(d_e, d_e)-ReLU-Linear(d_e, 128) (spec §17.2)
    clus_hidden: int = 128  # g_C: Linear(d_e, d_e)-ReLU-Linear(d_e, K) (spec §17.2)
    decoder_width: int = 256  # channels after the decoder's first Linear (spec §17.2)
    rec_from: Literal["e", "h"] = "e"  # what the decoder reads (spec §17.2: `--rec-from h`)
    w_rec: float = 0.1  # γ_r (spec §17.3)
    w_kl: float = 0.1  # γ_k (spec §17.3)
    nu: float = 1.0  # Student's t degrees of freedom (DEC)
    embed_epochs: int = 100  # E_A: stage `embed` epochs out of `epochs` (spec §17.3)
    target_every: int = 1  # epochs between refreshes of P (spec §17.2: T = 1 epoch)
    mu_init: Literal["kmeans", "head"] = "kmeans"  # spec §17.3
    kmeans_n_init: int = 20  # spec §17.3
    centers: Optional[str] = None  # a [K, d_e] .npy/.npz/.h5/.csv file: the initial centres instead of mu_init
    predict: Literal["head", "q"] = "head"  # labels from the cluster head or from the DEC assignment


STAGE_EMBED, STAGE_CLUSTER = "embed", "cluster"


# ------------------------------------------------------------------------------------------
# The network
# ------------------------------------------------------------------------------------------
def _network(setup: Setup):
    import torch
    from torch import nn

    from ccli.losses.dec import student_t_assignment, student_t_log_assignment
    from ccli.models.cluster_heads import ClusterHead, InstanceProjector
    from ccli.models.decoder import Decoder
    from ccli.models.heads import MLP

    config: Config = setup.config
    k, d_e = setup.num_clusters, config.embed_dim

    class CdecNet(nn.Module):
        """f, g_E, g_I, g_C, g_D and the centres μ; P [N, K] and the refresh state as buffers."""

        def __init__(self):
            super().__init__()
            self.backbone = setup.backbone
            feature_dim = int(setup.backbone.out_dim)
            self.embed_head = MLP(feature_dim, config.embed_hidden, d_e, layers=2, batch_norm=True)
            self.instance_head = InstanceProjector(d_e, config.inst_hidden, config.inst_dim)
            self.cluster_head = ClusterHead(d_e, k, config.clus_hidden)
            self.decoder = Decoder(d_e if config.rec_from == "e" else feature_dim, setup.channels, setup.size,
                                   config.decoder_width)
            if config.w_rec == 0:
                self.decoder.requires_grad_(False)  # ablation: no reconstruction, no gradient to sync
            self.centers = nn.Parameter(torch.zeros(k, d_e))
            self.register_buffer("target", torch.zeros(len(setup.dataset), k))
            self.register_buffer("centers_ready", torch.zeros((), dtype=torch.long))
            self.register_buffer("target_epoch", torch.zeros((), dtype=torch.long))  # stage epoch of P's last refresh
            self.num_clusters = k

        def forward(self, views):
            """{"z", "c", "e", "xhat": one per view, "log_q": view 1's log q}; one call per step."""
            if config.bn_per_view:
                hs = [self.backbone(v) for v in views]
            else:
                hs = list(self.backbone(torch.cat(list(views))).chunk(len(views)))
            es = [self.embed_head(h) for h in hs]
            out = {"z": [self.instance_head(e) for e in es], "c": [self.cluster_head(e) for e in es], "e": es,
                   "log_q": student_t_log_assignment(es[0], self.centers, config.nu)}
            if config.w_rec > 0:
                sources = es if config.rec_from == "e" else hs
                out["xhat"] = [self.decoder(s) for s in sources]
            return out

        @torch.no_grad()
        def embed(self, x):
            return self.embed_head(self.backbone(x))

        @torch.no_grad()
        def assign(self, x):
            return self.cluster_head(self.embed(x))

        @torch.no_grad()
        def assign_q(self, x):
            return student_t_assignment(self.embed(x), self.centers, config.nu)

        @torch.no_grad()
        def reconstruct(self, x):
            h = self.backbone(x)
            return self.decoder(self.embed_head(h) if config.rec_from == "e" else h)

    return CdecNet()


# ------------------------------------------------------------------------------------------
# The loss
# ------------------------------------------------------------------------------------------
def cdec_loss(out: dict, views, target_rows, config: Config, ctx, with_kl: bool) -> dict:
    """Spec §17.2 loss 5: L_ins + L_clu + w_rec·L_rec + w_kl·L_KL (L_KL only in stage `cluster`)."""
    from ccli.losses.cluster import cluster_contrastive_loss
    from ccli.losses.dec import kl_target_loss, reconstruction_loss
    from ccli.losses.nt_xent import nt_xent

    zs = [gather(z, ctx) for z in out["z"]]
    cs = [gather(c, ctx) for c in out["c"]]
    instance = nt_xent(zs[0], zs[1], config.tau)
    cluster = cluster_contrastive_loss(cs[0], cs[1], config.tau_c, config.entropy_weight)
    loss = instance + config.cluster_weight * cluster
    terms = {"instance": instance.detach(), "cluster": cluster.detach()}
    if "xhat" in out:
        rec = reconstruction_loss(out["xhat"], list(views))
        loss = loss + config.w_rec * rec
        terms["rec"] = rec.detach()
    if with_kl:
        kl = kl_target_loss(target_rows, out["log_q"])
        loss = loss + config.w_kl * kl
        terms["kl"] = kl.detach()
    else:
        # μ stays in the graph with a zero gradient: DDP expects one for every trainable parameter.
        loss = loss + 0.0 * out["log_q"].sum()
    return {"loss": loss, **terms}


# ------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------
def read_centers(path: str, num_clusters: int, dim: int) -> np.ndarray:
    """The [K, d_e] centres of the `centers` file, or BadInput naming both shapes."""
    from ccli.store.imports import open_source

    source = open_source(Path(path).expanduser(), "centers=")
    try:
        if (source.n, source.d) != (num_clusters, dim):
            raise BadInput(f"centers={path} holds {source.n} centres of dimension {source.d}, but this run needs "
                           f"K={num_clusters} centres of dimension embed_dim={dim}.")
        values = np.concatenate([np.asarray(block, dtype=np.float32) for block in source.blocks()])
    finally:
        source.close()
    if not np.isfinite(values).all():
        raise BadInput(f"centers={path} holds values that are not finite.")
    return values


def validate(inputs: Inputs, config: Config, num_clusters: int) -> None:
    for key in ("w_rec", "w_kl", "cluster_weight", "entropy_weight"):
        value = getattr(config, key)
        if not value >= 0:
            raise BadInput(f"{key}={value} is a loss weight and must be 0 or more.")
    if config.target_every < 1:
        raise BadInput(f"target_every={config.target_every} must be at least 1 (epochs between refreshes of P).")
    for key in ("embed_dim", "embed_hidden", "inst_hidden", "clus_hidden", "decoder_width", "kmeans_n_init"):
        if getattr(config, key) < 1:
            raise BadInput(f"{key}={getattr(config, key)} must be at least 1.")
    if not config.nu > 0:
        raise BadInput(f"nu={config.nu} must be positive (Student's t degrees of freedom).")
    epochs = config.engine.epochs
    if not 0 <= config.embed_epochs < epochs:
        raise BadInput(f"embed_epochs={config.embed_epochs} must be 0 or more and below epochs={epochs}, "
                       "so that stage cluster trains at least one epoch.")
    if config.predict == "q" and config.w_kl == 0:
        raise BadInput("predict=q needs the DEC term: with w_kl=0 the centres are never fitted.")
    check_common(inputs, config)
    if config.centers is not None:
        read_centers(config.centers, num_clusters, config.embed_dim)


def key_inputs(inputs: Inputs, config: Config) -> list[str]:
    """The centres file's content is part of the run key (its path alone is not)."""
    if config.centers is None:
        return []
    from ccli.engine.checkpoint import file_identity

    return [f"centers:{file_identity(Path(config.centers).expanduser())}"]


# ------------------------------------------------------------------------------------------
# Stages and hooks
# ------------------------------------------------------------------------------------------
def build(setup: Setup) -> Plan:
    import torch

    from ccli.data.augment import eval_view
    from ccli.data.gpu_augment import BatchAugmenter
    from ccli.engine.ddp import broadcast_from_main
    from ccli.fit.kmeans import kmeans
    from ccli.losses.dec import student_t_assignment, target_distribution

    config: Config = setup.config
    model = _network(setup)
    view = global_view(config, setup.size, setup.channels)
    clean = BatchAugmenter([eval_view(setup.size)], setup.mean, setup.std)
    given = read_centers(config.centers, setup.num_clusters, config.embed_dim) if config.centers else None
    images = setup.dataset.images

    def whole_dataset(fn, width: int, device) -> np.ndarray:
        generator = torch.Generator(device=device)
        return predict_probabilities(model, fn, width, images, lambda x: clean(x, generator)[0], device,
                                     config.eval_batch_size)

    def initial_centers(e: np.ndarray, device) -> np.ndarray:
        if given is not None:
            return given
        if config.mu_init == "head":
            probs = whole_dataset(model.assign, setup.num_clusters, device)
            labels = probs.argmax(1)
            centers = np.empty((setup.num_clusters, e.shape[1]), dtype=np.float32)
            for k in range(setup.num_clusters):
                members = labels == k
                # An empty cluster starts at the sample the head gives most to it.
                centers[k] = e[members].mean(0) if members.any() else e[probs[:, k].argmax()]
            return centers
        _, centers, _, backend = kmeans(e, setup.num_clusters, n_init=config.kmeans_n_init, seed=config.seed)
        log.info(f"cdec: centres from k-means ({backend}, n_init {config.kmeans_n_init}) on e of "
                 f"{len(e):,} images")
        return centers

    def refresh(ctx) -> None:
        """Stage `cluster`: μ by k-means once, then P from the whole dataset every target_every epochs."""
        first = model.centers_ready.item() == 0
        if not first and (ctx.epoch - 1) % config.target_every:
            return  # P (checkpointed) stays until its next refresh
        device = model.centers.device
        if setup.dist.is_main:
            e = whole_dataset(model.embed, config.embed_dim, device)
            if first:
                model.centers.data.copy_(torch.from_numpy(initial_centers(e, device)).to(device))
            q = student_t_assignment(torch.from_numpy(e).to(device), model.centers.detach(), config.nu)
            model.target.copy_(target_distribution(q))
        broadcast_from_main(model.centers.data, setup.dist)
        broadcast_from_main(model.target, setup.dist)
        model.centers_ready.fill_(1)
        model.target_epoch.fill_(ctx.epoch)

    def step(with_kl: bool):
        def loss_step(net, batch, ctx):
            out = net(batch["views"])
            rows = model.target[batch["index"].to(model.target.device)] if with_kl else None
            return cdec_loss(out, batch["views"], rows, config, ctx, with_kl)

        return loss_step

    kl_on = config.w_kl > 0
    stages = []
    if config.embed_epochs:
        stages.append(Stage(STAGE_EMBED, [view, view], step(False),
                            engine=dataclasses.replace(config.engine, epochs=config.embed_epochs)))
    stages.append(Stage(STAGE_CLUSTER, [view, view], step(kl_on),
                        engine=dataclasses.replace(config.engine, epochs=config.engine.epochs - config.embed_epochs),
                        before_epoch=refresh if kl_on else None))
    assign = model.assign_q if config.predict == "q" else model.assign
    record = {"reading": "PROPOSED: spec cctc-and-cdec.md §17.2 (CC + IDEC on a shared embedding); seed 002 is an "
                         "abstract only", "stages": [s.name for s in stages]}
    return Plan(model, stages, assign=assign, record=record)


def run(ctx: RunContext) -> Prediction:
    return train(ctx, build)
