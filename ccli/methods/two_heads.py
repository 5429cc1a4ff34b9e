"""The two-head family's shared parts: CC's config, views, network and loss step.

Contrastive Clustering (Li et al., AAAI 2021) and the methods that extend it (dcacn, cctc, cdec)
share a backbone feeding an instance projector and a softmax cluster head, CC's augmentation
and one forward over all views per step. Those parts live here, below the methods, so that each
method module composes them instead of importing another method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ccli.config import section
from ccli.engine.loop import EngineConfig
from ccli.methods.trainer import Setup, TrainConfig, gather


@dataclass
class TwoHeadConfig(TrainConfig):
    """CC's keys and defaults (CC's code, dcacn.md §9.3), which every two-head method starts from."""

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


def global_view(config: TwoHeadConfig, size: int, channels: int, **overrides):
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
