"""Contrastive Clustering (Li et al., AAAI 2021): the two-head base that dcacn (and cctc) extend.

A shared backbone feeds an instance projector (NT-Xent over the rows of two views, τ_I) and
a softmax cluster head (NT-Xent over the K columns, τ_C, plus the entropy term log K − H(π)).
Labels are the argmax of the cluster head on un-augmented images; no k-means anywhere.
Defaults are CC's code (dcacn.md §9.3): ResNet-34 with the ImageNet stem at 224 px, Adam 3e-4,
batch 256, 1000 epochs, τ_I 0.5, τ_C 1.0, seed 42, no input normalisation.

What is CC's own lives here: its augmentation (`global_view`), its two-head model and its loss;
the training itself is ccli.methods.trainer's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ccli.config import section
from ccli.engine.loop import EngineConfig
from ccli.methods.registry import Inputs, Prediction, RunContext
from ccli.methods.trainer import Plan, Setup, Stage, TrainConfig, check_common, gather, train


@dataclass
class Config(TrainConfig):
    backbone: str = "resnet34-imagenet"
    image_size: Optional[int] = 224
    engine: EngineConfig = section(lambda: EngineConfig(
        epochs=1000, batch_size=256, optimizer="adam", lr=3.0e-4, weight_decay=0.0, schedule="constant",
        knn_every=10,  # epochs between kNN-monitor evaluations of the backbone (0 = off)
        # cluster-head ACC/NMI/ARI on the training set in metrics.jsonl (labelled data; 0 = off): one
        # eval-mode pass over the images, about 1/6 of a two-view training epoch
        eval_every=10,
    ))
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
    # heads and loss
    inst_hidden: int = 512
    inst_dim: int = 128
    clus_hidden: int = 512
    tau: float = 0.5
    tau_c: float = 1.0
    entropy_weight: float = 1.0
    cluster_weight: float = 1.0
    bn_per_view: bool = True  # CC's code forwards each view separately


# ------------------------------------------------------------------------------------------
# Parts that dcacn (and the methods built on CC) reuse
# ------------------------------------------------------------------------------------------
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


def two_head_model(setup: Setup):
    """CC's network: the backbone with an instance projector and a softmax cluster head."""
    from ccli.models.cluster_heads import ContrastiveClusterer

    config = setup.config
    return ContrastiveClusterer(setup.backbone, setup.backbone.out_dim, setup.num_clusters, config.inst_hidden,
                                config.inst_dim, config.clus_hidden, config.bn_per_view)


def two_head_step(loss_fn):
    """A loss_step for the two-head model: all views in one forward, `loss_fn(hs, ps)` on the global batch."""
    def loss_step(net, batch, ctx):
        hs, ps = net(batch["views"])
        return loss_fn([gather(h, ctx) for h in hs], [gather(p, ctx) for p in ps])

    return loss_step


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


def build(setup: Setup) -> Plan:
    config: Config = setup.config
    view = global_view(config, setup.size, setup.channels)
    model = two_head_model(setup)
    return Plan(model, [Stage("cluster", [view, view], two_head_step(lambda hs, ps: cc_loss(hs, ps, config)))])


def run(ctx: RunContext) -> Prediction:
    return train(ctx, build)
