"""The autoencoder parts the thesis-001 methods (`selfpaced`, `graph`) share, below both.

Both train an autoencoder of ccli.models.autoencoder as their first stage; this module checks
its config (backbone, size, weights file, a warm start from an earlier run's pretrain-stage
checkpoint), names the files that enter the run key, and loads such a checkpoint.
"""

from __future__ import annotations

from pathlib import Path

from ccli.errors import BadInput
from ccli.methods.registry import Inputs
from ccli.methods.trainer import view_size

# Registers the autoencoder backbones (cae28/32/96, resnet50-feature-ae) before validate() checks names.
import ccli.models.autoencoder  # noqa: F401,E402


def ae_checkpoint_state(path: str, backbone: str, channels: int, size: int, latent_dim: int, methods=("selfpaced", "graph")):
    """The autoencoder weights of a pretrain-stage checkpoint, after checking it fits this run (BadInput otherwise)."""
    from ccli.engine.checkpoint import load_checkpoint

    file = Path(path).expanduser()
    if not file.is_file():
        raise BadInput(f"ae_checkpoint={file} does not exist." if not file.exists() else f"ae_checkpoint={file} is not a file.")
    state = load_checkpoint(file, "ae_checkpoint")
    bb = state.get("backbone") or {}
    if state.get("kind") != "cluster" or state.get("method") not in methods or state.get("stage") != "pretrain":
        raise BadInput(f"ae_checkpoint={file} is not the pretrain-stage checkpoint of a {' or '.join(methods)} run.")
    if int(bb.get("in_channels", -1)) != channels or int(bb.get("image_size", -1)) != size:
        raise BadInput(f"ae_checkpoint={file} was trained on {bb.get('in_channels')}-channel {bb.get('image_size')} px "
                       f"images, but this run uses {channels}-channel {size} px views.")
    if bb.get("name") != backbone:
        raise BadInput(f"ae_checkpoint={file} holds a {bb.get('name')} autoencoder, but this run uses {backbone}.")
    code = (state.get("config") or {}).get("latent_dim")  # the run's record; `backbone.out_dim` is the registry default
    if code is None or int(code) != latent_dim:
        raise BadInput(f"ae_checkpoint={file} has a {code}-d code, but this run's latent_dim is {latent_dim}.")
    return state


def latent_dim(config) -> int:
    from ccli.models.autoencoder import CAE_NAMES, DEFAULT_LATENT

    if config.latent_dim:
        return int(config.latent_dim)
    return DEFAULT_LATENT[CAE_NAMES[config.backbone]] if config.backbone in CAE_NAMES else 20


def check_autoencoder(inputs: Inputs, config) -> None:
    """The autoencoder checks both thesis methods share: backbone, size, weights file, AE checkpoint."""
    from ccli.models.autoencoder import CAE_NAMES, FrozenResNet50, build_autoencoder, load_backbone_weights

    if inputs.checkpoint is not None:
        raise BadInput("--checkpoint cannot start an autoencoder; give the pretrain-stage "
                       "checkpoint of an earlier run as --set ae_checkpoint=FILE.")
    names = [*CAE_NAMES, "resnet50-feature-ae"]
    if config.backbone not in names:
        raise BadInput(f"backbone={config.backbone} is not an autoencoder (valid: {', '.join(names)}).")
    if config.latent_dim < 0:
        raise BadInput(f"latent_dim={config.latent_dim} must be 0 (the backbone's) or more.")
    c = inputs.dataset.images.shape[-1]
    size = view_size(config, inputs.dataset.images)
    build_autoencoder(config.backbone, c, size, 2, config.bottleneck_act)  # size and channel checks, tiny code
    weights = getattr(config, "backbone_weights", "")  # graph has no feature autoencoder, hence no such key
    if weights:
        if config.backbone != "resnet50-feature-ae":
            raise BadInput(f"backbone_weights is for backbone resnet50-feature-ae, not {config.backbone}.")
        load_backbone_weights(FrozenResNet50(), weights)
    if config.ae_checkpoint:
        ae_checkpoint_state(config.ae_checkpoint, config.backbone, c, size, latent_dim(config))


def autoencoder_key_inputs(config) -> list[str]:
    """The identities of the weights files a config names: a changed file is another run."""
    from ccli.engine.checkpoint import file_identity

    keys = []
    weights = getattr(config, "backbone_weights", "")
    if weights:
        keys.append(f"backbone_weights:{file_identity(Path(weights).expanduser())}")
    if config.ae_checkpoint:
        keys.append(f"ae_checkpoint:{file_identity(Path(config.ae_checkpoint).expanduser())}")
    return keys


def load_ae_checkpoint(ae, config, channels: int, size: int) -> None:
    """Put the autoencoder weights of `ae_checkpoint` (checked) into `ae`."""
    state = ae_checkpoint_state(config.ae_checkpoint, config.backbone, channels, size, latent_dim(config))
    ae.load_state_dict({key[len("ae."):]: v for key, v in state["model"].items() if key.startswith("ae.")})


def view_of(config, size: int, channels: int):
    """The thesis's augmentation T (§3.7): random resized crop, flip, colour jitter, grayscale, blur
    (each optional); selfpaced's stage-1 views and graph's PROPOSED two-view keys."""
    from ccli.data.augment import ViewAug

    s = config.jitter_strength
    colour = channels == 3
    return ViewAug(size=size, scale=tuple(config.crop_scale), flip_p=config.flip_p, jitter_p=config.jitter_p,
                   brightness=0.4 * s, contrast=0.4 * s, saturation=0.4 * s if colour else 0.0,
                   hue=0.1 * s if colour else 0.0, gray_p=config.gray_p if colour else 0.0, blur_p=config.blur_p,
                   intensity_p=0.0 if colour else config.intensity_p)
