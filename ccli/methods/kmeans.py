"""k-means on a features artifact: the quick baseline every report compares against.

Given images instead (`--data`), kmeans runs the representation chain first through the
library of `ccli pretrain` / `ccli embed`: pretrain with the `pretrain_preset` recipe (or start
from `--checkpoint`), embed the clean images, then cluster. Both steps go through the cache,
so the chain costs one pretraining per recipe and dataset.

faiss (when importable) runs Lloyd iterations with `n_init` restarts and keeps the lowest
inertia, as scikit-learn does; both backends see every point (faiss's default subsamples to
256 points per centroid, which is a different algorithm). Features are L2-normalised first
by default because contrastive embeddings are trained on the sphere, where Euclidean k-means
on unit vectors is spherical (cosine) k-means.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ccli import log
from ccli.errors import BadInput
from ccli.fit.kmeans import faiss_available, kmeans
from ccli.methods.registry import Inputs, Prediction, RunContext


@dataclass
class Config:
    num_clusters: int = 0  # 0 = the dataset's class count
    # 'auto' = ccli's torch Lloyd (k-means++, early stop): inertia ≤ faiss's on digits and
    # Fashion-MNIST features at 10-15× less time (BENCHMARKS.md, issue 17).
    backend: Literal["auto", "torch", "faiss", "sklearn"] = "auto"
    n_init: int = 10  # scikit-learn's default; 3 and 5 restarts measured worse inertia on some seeds (issue 17)
    max_iter: int = 300
    normalize: bool = True
    view: str = ""  # '' = the `features` dataset; otherwise views/<view>
    seed: int = 42
    # from images only: the `ccli pretrain` recipe as <method>-<name> (presets/<method>/<name>.yaml) and the layer to embed
    pretrain_preset: str = ""
    pretrain_epochs: int = 0  # 0 = the recipe's epochs; else the recipe trained this long (an equal-time budget)
    embed_layer: Literal["backbone", "projector"] = "backbone"


def validate(inputs: Inputs, config: Config, num_clusters: int) -> None:
    if config.backend == "faiss" and not faiss_available():
        raise BadInput("backend=faiss was requested but faiss is not installed (use backend=torch).")
    if inputs.features is None:
        if inputs.checkpoint is not None:
            from ccli.methods.pretrain import load_pretrained

            pretrained = load_pretrained(inputs.checkpoint, what="--checkpoint")
            channels = inputs.dataset.images.shape[-1]
            if pretrained.in_channels != channels:
                raise BadInput(f"--checkpoint {inputs.checkpoint} was trained on {pretrained.in_channels}-channel images "
                               f"but --data {inputs.data} has {channels}-channel ones.")
        elif not config.pretrain_preset:
            from ccli.config import PRETRAIN_GROUP, available_presets

            raise BadInput(f"kmeans on --data {inputs.data} needs features: give --features, --checkpoint, or a "
                           f"pretraining recipe to learn them with --set pretrain_preset=NAME (one of "
                           f"{', '.join(available_presets(PRETRAIN_GROUP))}).")
        else:
            _pretrain_config(config)
    if inputs.features is not None:
        from ccli.store import open_artifact

        name = f"views/{config.view}" if config.view else "features"
        with open_artifact(inputs.features, "features", what="--features") as art:
            if config.view and name not in art:
                raise BadInput(f"--features {inputs.features} has no view '{config.view}'.")
            _check_finite(art.read(name), f"--features {inputs.features}", name)


def _check_finite(x: np.ndarray, label: str, name: str) -> None:
    """k-means on NaN or inf gives garbage centroids (and faiss errors): refuse them with the row count."""
    bad = int((~np.isfinite(np.asarray(x, dtype=np.float64).reshape(len(x), -1))).any(axis=1).sum())
    if bad:
        raise BadInput(f"{label}: dataset '{name}' has NaN or inf values in {bad} of {len(x)} rows.")


def _pretrain_config(config: Config):
    from ccli.config import resolve_config
    from ccli.methods.pretrain import PretrainConfig, effective

    if config.pretrain_epochs < 0:
        raise BadInput(f"pretrain_epochs={config.pretrain_epochs} must be 0 (the recipe's) or more.")
    overrides = [f"epochs={config.pretrain_epochs}"] if config.pretrain_epochs else []
    try:
        return effective(resolve_config(PretrainConfig, "pretrain", config.pretrain_preset, overrides))
    except BadInput as exc:
        raise BadInput(f"pretrain_preset={config.pretrain_preset}: {exc}") from exc


def key_inputs(inputs: Inputs, config: Config) -> list[str]:
    """What else defines a run from images: the pretraining recipe's content, not just its name."""
    if inputs.features is None and inputs.checkpoint is None and config.pretrain_preset:
        from ccli.config import config_dict
        from ccli.store import content_key

        return [f"pretrain:{content_key('pretrain', config_dict(_pretrain_config(config)))}"]
    return []


def _features_path(ctx: RunContext) -> str:
    """The features to cluster: --features, else --data embedded by --checkpoint or a fresh (cached) pretraining."""
    if ctx.inputs.features is not None:
        return str(ctx.inputs.features)
    from ccli.methods.pretrain import embed, pretrain

    config: Config = ctx.config
    checkpoint = ctx.inputs.checkpoint
    if checkpoint is None:
        pretrain_config = _pretrain_config(config)
        log.info(f"kmeans: pretraining {pretrain_config.method}/{pretrain_config.backbone} on {ctx.inputs.data} "
                 f"(preset {config.pretrain_preset}; cached for later runs)")
        checkpoint = pretrain(pretrain_config, ctx.inputs.data, ctx.inputs.split, cache_dir=ctx.cache_dir).checkpoint
    path, _ = embed(checkpoint, ctx.inputs.data, ctx.inputs.split, layer=config.embed_layer, device=ctx.device,
                    cache_dir=ctx.cache_dir)
    return str(path)


def run(ctx: RunContext) -> Prediction:
    from ccli.store import open_artifact

    config: Config = ctx.config
    path = _features_path(ctx)
    with open_artifact(path, "features", what="--features") as art:
        x = art.read(f"views/{config.view}" if config.view else "features").astype(np.float32)
    if config.normalize:
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    from ccli.engine.progress import StepProgress

    with StepProgress("k-means", config.n_init * config.max_iter) as bar:
        labels, _, inertia, backend = kmeans(x, ctx.num_clusters, backend=config.backend, n_init=config.n_init,
                                             max_iter=config.max_iter, seed=config.seed, progress=bar.update)
    log.debug(f"k-means ({backend}) on {x.shape[0]:,}×{x.shape[1]} features: inertia {inertia:.4g}")
    return Prediction(labels, None, {"backend": backend, "inertia": inertia, "features": path})
