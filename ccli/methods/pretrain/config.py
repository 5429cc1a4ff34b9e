"""`ccli pretrain`'s configuration: one dataclass for both pretext methods, and their defaults."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

from ccli.config import PRETRAIN_METHODS, section
from ccli.engine.loop import EngineConfig
from ccli.errors import BadInput

METHODS = PRETRAIN_METHODS  # one list: the preset layout (presets/<method>/) knows the same names
AUGMENTS = ("auto", "simclr", "scanplus", "simclr+ra")


@dataclass
class PretrainConfig:
    """Every `--set` key of `ccli pretrain`; None means "the method's default" (see `effective`)."""

    method: str = "simclr"
    backbone: str = "auto"  # auto: small_cnn below 32 px, resnet18 (stem by size) from 32 px
    image_size: Optional[int] = None  # None: the dataset's native size
    seed: int = 0
    device: str = "auto"
    engine: EngineConfig = section(EngineConfig)  # epochs, batch_size, lr, … (flat keys work: `--set lr=…`)
    # augmentation
    augment: str = "auto"  # auto (simclr for simclr, scanplus for moby) | simclr | scanplus | simclr+ra
    crop_scale: tuple[float, float] = (0.2, 1.0)
    flip_p: float = 0.5
    jitter_strength: float = 1.0
    intensity_p: float = 0.8  # grayscale data only: probability of the intensity jitter
    intensity_scale: tuple[float, float] = (0.5, 1.5)
    intensity_gamma: tuple[float, float] = (0.5, 2.0)
    randaug_n: int = 4
    cutout: Optional[int] = None  # None: 16 @ 32 px, 32 @ 96 px, 75 @ 224 px, size/3 otherwise
    multicrop_local: int = 0  # local crops per image (0: two views only)
    multicrop_local_size: Optional[int] = None  # None: 96/224 of the image size
    multicrop_global_scale: tuple[float, float] = (0.4, 1.0)
    multicrop_local_scale: tuple[float, float] = (0.05, 0.4)
    # heads and loss
    temperature: Optional[float] = None  # None: 0.5 simclr, 0.2 moby
    proj_hidden: Optional[int] = None  # None: backbone width (simclr), 4096 (moby)
    proj_dim: Optional[int] = None  # None: 128 (simclr), 256 (moby)
    proj_bn: Optional[bool] = None  # None: False (simclr), True (moby)
    pred_hidden: int = 4096
    ema_base: float = 0.996
    queue_size: int = 4096
    queue_mode: str = "two"  # two (Q_a, Q_b as MoBY) | single (one queue of h_a)


def effective(config: PretrainConfig) -> PretrainConfig:
    """The config with every method-dependent default filled in (this is what gets recorded)."""
    if config.method not in METHODS:
        raise BadInput(f"--method {config.method} is not a pretraining method (available: {', '.join(METHODS)}).")
    if config.augment not in AUGMENTS:
        raise BadInput(f"augment={config.augment} is not one of {', '.join(AUGMENTS)}.")
    if config.engine.augment_on not in ("cpu", "gpu"):
        raise BadInput(f"augment_on={config.engine.augment_on} must be cpu or gpu.")
    if config.queue_mode not in ("two", "single"):
        raise BadInput(f"queue_mode={config.queue_mode} must be two or single.")
    simclr = config.method == "simclr"
    return dataclasses.replace(
        config,
        temperature=config.temperature if config.temperature is not None else (0.5 if simclr else 0.2),
        proj_dim=config.proj_dim or (128 if simclr else 256),
        proj_bn=config.proj_bn if config.proj_bn is not None else (not simclr),
        augment=config.augment if config.augment != "auto" else ("simclr" if simclr else "scanplus"),
    )
