"""selfpaced (thesis 001, Ch. 3; selfpaced-and-graph.md §3): self-paced instance-level contrastive clustering.

Three stages of one run (ccli.methods.trainer):

1. `pretrain`: the autoencoder (ccli.models.autoencoder) learns to reconstruct (Eq. 2.3);
2. `stage1` (Algorithm 3.1): k-means (ccli.fit.kmeans) on the pretrained codes gives the
   centres μ; the encoder then minimises λ·L′ + L″, the augmentation consistency (Eq. 3.1,
   minimising 1 − cos as the spec proposes, S1) plus the Student-t-weighted centre loss
   (Eq. 3.2–3.3). μ is recomputed by Eq. 3.4 from the augmented copy's codes every T1 epochs;
   it is a buffer, never a learned parameter. The augmented copy T(X) is drawn once (Alg. 3.1
   step 2; `aug_copy: fixed`) or per epoch (`epoch`);
3. `stage2` (Algorithm 3.2): each batch's pairwise cosine similarities of the current codes
   (detached; S2, S3, S5) give positives (≥ ζ) and negatives (≤ γ), the rest is ignored; the
   128-128-128-K softmax head and the encoder (its own, smaller rate, S4) minimise Eq. 3.7,
   whose denominator holds the negatives only. `threshold_schedule: linear` moves (ζ, γ) from
   (zeta_start, gamma_start) to (ζ, γ) over the stage (easy pairs first); `fixed` is the thesis.

Labels are the argmax of the head on un-augmented images (Alg. 3.3); no k-means at the end.
`engine.epochs` is M2 (stage 2, the stage `--epochs` sets); `stage1_epochs` is M1.
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
from ccli.methods.registry import Inputs, Prediction, RunContext
from ccli.methods.autoencoding import autoencoder_key_inputs, check_autoencoder, latent_dim, load_ae_checkpoint, view_of
from ccli.methods.trainer import Plan, Setup, Stage, TrainConfig, check_common, train



@dataclass
class Config(TrainConfig):
    backbone: str = "cae28"  # cae28 | cae32 | cae96 | resnet50-feature-ae (RGB: frozen ResNet-50 + 2048-500-500-1000-d)
    image_size: Optional[int] = 28
    latent_dim: int = 0  # 0: the backbone's (10 for cae28, thesis's grayscale d; 20 for the feature AE, RGB d)
    bottleneck_act: Literal["none", "relu"] = "none"  # S13
    backbone_weights: str = ""  # resnet50-feature-ae: a local torchvision ResNet-50 weights file ('' = random init)
    ae_checkpoint: str = ""  # a pretrain-stage checkpoint (checkpoint-pretrain.pt) of a selfpaced/graph run: skip pretraining
    engine: EngineConfig = section(lambda: EngineConfig(
        epochs=50,  # M2 (thesis §3.3.3)
        batch_size=500,  # S14: DCSS code
        optimizer="adam", lr=1.0e-3,  # the MLP's rate (thesis §3.3.3)
        weight_decay=0.0, schedule="constant", knn_every=0, eval_every=5,
    ))
    # pretraining (S14: not stated; DCSS code)
    pretrain_epochs: int = 200
    pretrain_lr: float = 1.0e-3
    pretrain_batch_size: int = 256
    pretrain_augment: bool = False  # true: reconstruct the clean image from an augmented view (Eq. 2.4, denoising)
    kmeans_n_init: int = 20  # §3.4 PROPOSED
    # stage 1
    stage1_epochs: int = 100  # M1
    lam: float = 0.7  # λ in L1 = λL′ + L″ (Eq. 3.5)
    alpha: float = 1.0  # Student-t degrees of freedom (Eq. 3.3)
    t1: int = 2  # centre update period in stage 1 (epochs)
    aug_loss: Literal["cosdist", "literal"] = "cosdist"  # S1
    stage1_recon_weight: float = 0.0  # §3.5: no reconstruction term in stage 1
    aug_copy: Literal["fixed", "epoch"] = "fixed"  # Alg. 3.1 step 2: one augmented copy drawn before the loop
    stage1_lr: float = 1.0e-5  # the autoencoder's rate in stage 1 (thesis §3.3.3: AE lr 1e-5)
    lr_ae: float = 1.0e-5  # the encoder's rate in stage 2, beside the MLP's engine.lr (thesis §3.3.3)
    # stage 2
    zeta: float = 0.8  # positive threshold ζ (ξ, S6)
    gamma: float = 0.2  # negative threshold γ
    tau: float = 0.5  # instance temperature τ
    t2: int = 5  # centre update period in stage 2 (epochs; used by sim_source soft)
    sim_source: Literal["feature", "centred", "soft"] = "feature"  # S2: cosine of the codes, of the batch-centred codes, or of the Student-t assignments (P·Pᵀ, rows normalised)

    threshold_schedule: Literal["fixed", "linear"] = "fixed"  # fixed: the thesis's constants
    stage2_views: int = 1  # 1: the thesis (clean images only); 2: + one augmented view, each image's own view a positive
    zeta_start: float = 0.95  # linear schedule only: ζ at the start of stage 2 (PROPOSED)
    gamma_start: float = 0.05  # linear schedule only: γ at the start of stage 2 (PROPOSED)
    mlp_hidden: tuple[int, ...] = (128, 128, 128)  # thesis §3.3.3: 128-128-128-K, BN + ReLU
    entropy_weight: float = 0.0  # not in the thesis: CC's log K − H(π) on the head's batch marginal, against merged clusters
    finetune_encoder: bool = True  # S4
    # augmentation (§3.7: SimCLR's operations; for grayscale crop + blur)
    crop_scale: tuple[float, float] = (0.5, 1.0)
    flip_p: float = 0.0
    jitter_p: float = 0.0
    jitter_strength: float = 1.0  # ColorJitter(0.4s, 0.4s, 0.4s, 0.1s)
    gray_p: float = 0.0
    blur_p: float = 0.5
    intensity_p: float = 0.0  # 1-channel data: per-image brightness scale and gamma


# ------------------------------------------------------------------------------------------
# Checks
# ------------------------------------------------------------------------------------------
def check_thresholds(zeta: float, gamma: float, keys: tuple[str, str] = ("zeta", "gamma")) -> None:
    if not zeta > gamma:
        raise BadInput(f"{keys[0]}={zeta} must be larger than {keys[1]}={gamma}: pairs at or above {keys[0]} are "
                       f"positives, at or below {keys[1]} negatives.")


def validate(inputs: Inputs, config: Config, num_clusters: int) -> None:
    check_thresholds(config.zeta, config.gamma)
    if config.threshold_schedule == "linear":
        check_thresholds(config.zeta_start, config.gamma_start, ("zeta_start", "gamma_start"))
    for key in ("pretrain_epochs", "stage1_epochs"):
        if getattr(config, key) < 0:
            raise BadInput(f"{key}={getattr(config, key)} must be 0 or more.")
    if config.stage2_views not in (1, 2):
        raise BadInput(f"stage2_views={config.stage2_views} must be 1 (clean images) or 2 (clean + augmented view).")
    for key in ("t1", "t2", "pretrain_batch_size"):
        if getattr(config, key) < 1:
            raise BadInput(f"{key}={getattr(config, key)} must be at least 1.")
    if config.pretrain_batch_size > inputs.num_samples:
        raise BadInput(f"pretrain_batch_size={config.pretrain_batch_size} is larger than the {inputs.num_samples:,} images.")
    if config.alpha <= 0 or config.tau <= 0:
        raise BadInput(f"alpha={config.alpha} and tau={config.tau} must be positive.")
    if not config.mlp_hidden:
        raise BadInput("mlp_hidden must name at least one hidden layer width.")
    check_autoencoder(inputs, config)
    check_common(inputs, config)


def key_inputs(inputs: Inputs, config: Config) -> list[str]:
    return autoencoder_key_inputs(config)


# ------------------------------------------------------------------------------------------
# Model
# ------------------------------------------------------------------------------------------
def _modules():
    import torch
    from torch import nn

    class SelfPacedNet(nn.Module):
        """Autoencoder (encoder = `.backbone`), the softmax head g_η and the centres μ (a buffer)."""

        def __init__(self, ae, num_clusters: int, hidden):
            super().__init__()
            self.backbone = ae.encoder
            self.ae = ae
            layers, d = [], ae.encoder.out_dim
            for width in hidden:
                layers += [nn.Linear(d, width), nn.BatchNorm1d(width), nn.ReLU()]
                d = width
            self.head = nn.Sequential(*layers, nn.Linear(d, num_clusters))
            self.register_buffer("centres", torch.zeros(num_clusters, ae.encoder.out_dim))
            self.register_buffer("centres_ready", torch.zeros((), dtype=torch.bool))

        def assign(self, x):
            return torch.softmax(self.head(self.backbone(x)), dim=1)

    class Run(nn.Module):
        """What one stage's step calls once: a view through a part of the network (parameters shared)."""

        def __init__(self, net, part: str):
            super().__init__()
            self.parts = nn.ModuleDict({"ae": net.ae} if part != "assign" else {"encoder": net.backbone,
                                                                               "head": net.head})
            self.part = part

        def forward(self, x):
            if self.part == "assign":
                h = self.parts["encoder"](x)
                return h, torch.softmax(self.parts["head"](h), dim=1)
            return self.parts["ae"](x)

    return SelfPacedNet, Run


def encode_all(encoder, images_u8, views, mean, std, device, batch_size: int, params=None, seed: int = 0):
    """Codes [N, d] of every image under each view (eval mode, no gradients); `params[v]` fixes view v's draws."""
    import torch

    from ccli.data.gpu_augment import BatchAugmenter, apply_batch

    gen = torch.Generator(device=device).manual_seed(seed)
    outs = [[] for _ in views]
    was = encoder.training
    encoder.eval()
    try:
        with torch.no_grad():
            for begin in range(0, len(images_u8), batch_size):
                x = images_u8[begin:begin + batch_size]
                for v, aug in enumerate(views):
                    if params is not None and params[v] is not None:
                        xv = apply_batch(aug, x, {k: t[begin:begin + len(x)] for k, t in params[v].items()}, mean, std)
                    else:
                        xv = BatchAugmenter([aug], mean, std)(x, gen)[0]
                    outs[v].append(encoder(xv).float())
    finally:
        encoder.train(was)
    return [torch.cat(o) for o in outs]


def build(setup: Setup) -> Plan:
    import torch
    import torch.nn.functional as F

    from ccli.data.augment import eval_view
    from ccli.data.gpu_augment import apply_batch, sample_batch_params
    from ccli.fit.kmeans import kmeans
    from ccli.losses import selfpaced as L
    from ccli.models.autoencoder import build_autoencoder, load_backbone_weights

    config: Config = setup.config
    size, c, k = setup.size, setup.channels, setup.num_clusters
    SelfPacedNet, Run = _modules()
    torch.manual_seed(config.seed)
    ae = build_autoencoder(config.backbone, c, size, latent_dim(config), config.bottleneck_act)
    if config.backbone_weights:
        load_backbone_weights(ae.encoder.trunk, config.backbone_weights)
    model = SelfPacedNet(ae, k, config.mlp_hidden)
    clean, augmented = eval_view(size), view_of(config, size, c)
    images = torch.from_numpy(np.ascontiguousarray(setup.dataset.images)).permute(0, 3, 1, 2)
    mean, std = setup.mean, setup.std
    cache: dict = {}

    def device_images():
        if "images" not in cache:
            cache["images"] = images.to(setup.device)
        return cache["images"]

    def fixed_params():
        """Alg. 3.1 step 2: one draw of T's random parameters per image, reused in every epoch."""
        if "params" not in cache:
            gen = torch.Generator(device=setup.device).manual_seed(config.seed + 7919)
            n, _, h, w = images.shape
            cache["params"] = sample_batch_params(augmented, n, h, w, c, gen, setup.device)
        return cache["params"]

    def augmented_batch(batch, ctx):
        if config.aug_copy == "epoch":
            return batch["views"][1]
        idx = batch["index"].to(setup.device)
        params = {key: t[idx] for key, t in fixed_params().items()}
        return apply_batch(augmented, device_images()[idx], params, mean, std)

    # ---- pretraining: reconstruction only (Eq. 2.3; Eq. 2.4 with pretrain_augment) ----
    def pretrain_step(net, batch, ctx):
        clean_x = batch["views"][0]
        h, rec, target = net(batch["views"][1] if config.pretrain_augment else clean_x)
        if config.pretrain_augment and target.dim() == 4:
            target = clean_x  # a denoising image autoencoder reconstructs the clean view
        return {"loss": F.mse_loss(rec, target)}

    # ---- stage 1 ----
    def refresh_centres(ctx):
        """k-means on the pretrained codes once, then Eq. 3.4 every t1 epochs (from the first epoch on)."""
        encoder = model.backbone
        x = device_images()
        if not bool(model.centres_ready):
            (h,) = encode_all(encoder, x, [clean], mean, std, setup.device, config.eval_batch_size)
            _, centroids, _, backend = kmeans(h.cpu().numpy(), k, n_init=config.kmeans_n_init, seed=config.seed)
            model.centres.copy_(torch.from_numpy(centroids).to(model.centres))
            model.centres_ready.fill_(True)
            log.debug(f"selfpaced: k-means ({backend}) centres on {len(h):,} pretrained codes")
            return
        if (ctx.epoch - 1) % config.t1:
            return
        params = [None, fixed_params() if config.aug_copy == "fixed" else None]
        h, h_aug = encode_all(encoder, x, [clean, augmented], mean, std, setup.device, config.eval_batch_size, params,
                              seed=config.seed + ctx.epoch)
        p = L.student_t(h, model.centres, config.alpha)
        model.centres.copy_(L.weighted_centres(h_aug, p))

    def stage1_step(net, batch, ctx):
        x = batch["views"][0]
        x_aug = augmented_batch(batch, ctx)
        h_all, rec, target = net(torch.cat([x, x_aug]))
        h, h_aug = h_all[: len(x)], h_all[len(x):]
        aug = L.augmentation_loss(h, h_aug, literal=config.aug_loss == "literal")
        p = L.student_t(h.detach(), model.centres, config.alpha)
        centre = L.centre_loss(h, model.centres, p)
        loss = config.lam * aug + centre
        out = {"augmentation": aug.detach(), "centre": centre.detach()}
        if config.stage1_recon_weight:
            recon = F.mse_loss(rec[: len(x)], target[: len(x)])
            loss = loss + config.stage1_recon_weight * recon
            out["reconstruction"] = recon.detach()
        return {"loss": loss, **out}

    # ---- stage 2 ----
    def stage2_epoch(ctx):
        if config.sim_source == "soft" and (ctx.epoch - 1) % config.t2 == 0:
            params = [None, fixed_params() if config.aug_copy == "fixed" else None]
            h, h_aug = encode_all(model.backbone, device_images(), [clean, augmented], mean, std, setup.device,
                                  config.eval_batch_size, params, seed=config.seed + 1000 + ctx.epoch)
            model.centres.copy_(L.weighted_centres(h_aug, L.student_t(h, model.centres, config.alpha)))

    def stage2_step(net, batch, ctx):
        views = batch["views"]
        b = len(views[0])
        h, z = net(torch.cat(list(views)) if len(views) > 1 else views[0])
        progress = ctx.step / max(1, ctx.total_steps - 1)
        zeta = L.threshold_at(progress, config.zeta, config.zeta_start, config.threshold_schedule)
        gamma = L.threshold_at(progress, config.gamma, config.gamma_start, config.threshold_schedule)
        with torch.no_grad():
            sim = pair_similarity(h[:b].float())  # the clean view's codes decide the pairs
            pos, neg = L.threshold_pairs(sim, zeta, gamma)
            if len(views) > 1:
                pos, neg = L.with_views(pos, neg, len(views))
        loss = L.negatives_only_contrast(z, pos, neg, config.tau)
        extra = {}
        if config.entropy_weight:
            from ccli.losses.cluster import entropy_regulariser

            balance = sum(entropy_regulariser(z[v * b:(v + 1) * b]) for v in range(len(views))) / len(views)
            loss = loss + config.entropy_weight * balance
            extra["entropy"] = balance.detach()
        n = len(pos)
        return {"loss": loss, **extra, "positive_pairs": pos.sum().float() / n, "negative_pairs": neg.sum().float() / n,
                "ignored_pairs": (n * (n - 1) - pos.sum() - neg.sum()).float() / n}

    def pair_similarity(h):
        """Sim of §3.6 on one view: cosine of the codes (S2), of the batch-centred codes, or of the Student-t assignments."""
        if config.sim_source == "soft":
            p = F.normalize(L.student_t(h, model.centres, config.alpha), dim=1)
            return p @ p.t()  # cosine of the soft assignments: 1 for the same confident cluster
        if config.sim_source == "centred":  # codes sit in a cone: centre them so that unlike pairs reach ≤ γ
            h = h - h.mean(0, keepdim=True)
        hn = F.normalize(h, dim=1)
        return hn @ hn.t()

    base = config.engine
    stages = []
    # A stage's engine is built only when the stage runs: EngineConfig refuses epochs=0.
    if config.ae_checkpoint:
        load_ae_checkpoint(model.ae, config, c, size)
    elif config.pretrain_epochs:
        pretrain_engine = dataclasses.replace(base, epochs=config.pretrain_epochs, lr=config.pretrain_lr,
                                              batch_size=config.pretrain_batch_size, eval_every=0)
        stages.append(Stage("pretrain", [clean, augmented] if config.pretrain_augment else [clean], pretrain_step,
                            engine=pretrain_engine, trainable=Run(model, "ae")))
    stage1_views = [clean, augmented] if config.aug_copy == "epoch" else [clean]
    if config.stage1_epochs:
        stage1_engine = dataclasses.replace(base, epochs=config.stage1_epochs, lr=config.stage1_lr, eval_every=0)
        stages.append(Stage("stage1", stage1_views, stage1_step, engine=stage1_engine, trainable=Run(model, "ae"),
                            before_epoch=refresh_centres))
    head_params = list(model.head.parameters())
    groups = [{"params": head_params}]
    if config.finetune_encoder:
        groups.append({"params": list(model.backbone.parameters()), "lr_scale": config.lr_ae / base.lr})
    if not config.stage1_epochs and config.sim_source == "soft":
        first = stage2_epoch

        def stage2_epoch(ctx, first=first):  # sim_source soft still needs k-means centres
            if not bool(model.centres_ready):
                refresh_centres(ctx)
            first(ctx)
    stages.append(Stage("stage2", [clean, augmented][: config.stage2_views], stage2_step, trainable=Run(model, "assign"), before_epoch=stage2_epoch,
                        param_groups=groups))
    return Plan(model, stages, record={"latent_dim": latent_dim(config)})


def run(ctx: RunContext) -> Prediction:
    return train(ctx, build)
