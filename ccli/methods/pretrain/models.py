"""The parts both pretext methods share: their heads, their views, and the method switch."""

from __future__ import annotations

import dataclasses

from ccli.errors import BadInput
from ccli.methods.pretrain.config import PretrainConfig


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


def build_task(cfg, backbone, n_global: int = 2, n_local: int = 0):
    """The engine Task of an effective config's method; returns (task, backbone_prefix, projector_prefix)."""
    from ccli.methods.pretrain import moby, simclr

    projector, predictor = build_heads(cfg, backbone.out_dim)
    if cfg.method == "simclr":
        return simclr.build_task(cfg, backbone, projector, n_global, n_local)
    return moby.build_task(cfg, backbone, projector, predictor)
