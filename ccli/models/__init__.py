"""Backbones and heads, behind one registry.

    build_backbone(name, in_channels, image_size) -> nn.Module

returns a module whose forward maps images [B, C, H, W] to pooled features [B, out_dim] and
which carries `.out_dim` (int) and `.backbone_name` (the registry name it was built from).

Registered names:

- ``small_cnn``: ~93k-parameter CNN for 8–64 px grayscale data (digits, MNIST-like), 128-d.
- ``resnet18``, ``resnet34``, ``resnet50``: torchvision ResNets whose stem follows the image
  size (≤64 px: CIFAR stem; ≤160 px: STL stem; larger: ImageNet stem).
- ``resnet18-cifar`` / ``-stl`` / ``-imagenet`` (and the same for 34 and 50): a fixed stem.

Other modules add their own with `register_backbone(name, factory, min_size, max_size)`;
`factory(in_channels, image_size)` must return such a module. Modules listed in `_PLUGINS`
(e.g. ``ccli.models.cbam``) are imported on first use of the registry so their
registrations are visible without the caller importing them.

A name the registry does not know, or an image size outside the backbone's range, raises
`BadInput` with one sentence saying what is valid.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Callable

from ccli.errors import BadInput

# Every module of ccli that registers backbones: the list must not depend on what else was imported
# (the completion scripts and `--backbone` errors list them all).
_PLUGINS = ("ccli.models.cbam", "ccli.models.autoencoder")


@dataclass(frozen=True)
class BackboneEntry:
    name: str
    factory: Callable[[int, int], "object"]
    min_size: int
    max_size: int
    description: str = ""


_REGISTRY: dict[str, BackboneEntry] = {}
_plugins_loaded = False


def register_backbone(name: str, factory: Callable[[int, int], object], min_size: int, max_size: int,
                      description: str = "") -> None:
    """Add (or replace) a backbone: factory(in_channels, image_size) -> module with `.out_dim`."""
    _REGISTRY[name] = BackboneEntry(name, factory, int(min_size), int(max_size), description)


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for module in _PLUGINS:
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)


def available_backbones() -> list[str]:
    _load_plugins()
    return sorted(_REGISTRY)


def backbone_entry(name: str, in_channels: int | None = None, image_size: int | None = None) -> BackboneEntry:
    """The registry entry for `name`, after checking that it can take the given image size."""
    _load_plugins()
    if name not in _REGISTRY:
        raise BadInput(f"backbone '{name}' is unknown (available: {', '.join(sorted(_REGISTRY))}).")
    entry = _REGISTRY[name]
    if image_size is not None and not entry.min_size <= int(image_size) <= entry.max_size:
        hint = " (use small_cnn, or resize with --set image_size=32)" if image_size < entry.min_size else ""
        raise BadInput(
            f"backbone '{name}' takes images of {entry.min_size}–{entry.max_size} px, "
            f"but the data are {image_size} px{hint}."
        )
    if in_channels is not None and in_channels not in (1, 3):
        raise BadInput(f"backbone '{name}' takes 1- or 3-channel images, not {in_channels}-channel ones.")
    return entry


def build_backbone(name: str, in_channels: int = 3, image_size: int = 32):
    """Build a registered backbone for images of `in_channels` × `image_size` × `image_size`."""
    entry = backbone_entry(name, in_channels, image_size)
    model = entry.factory(int(in_channels), int(image_size))
    if not hasattr(model, "out_dim"):
        raise TypeError(f"backbone factory for {name!r} returned a module without .out_dim")
    model.backbone_name = name
    return model


def count_parameters(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _register_builtin() -> None:
    from ccli.models import resnet

    def small_cnn(in_channels: int, image_size: int):
        from ccli.models.small_cnn import SmallCNN

        return SmallCNN(in_channels, image_size)

    register_backbone("small_cnn", small_cnn, 8, 64, "3-stage CNN, ~93k parameters, 128-d (digits, MNIST)")

    def make(depth: str, stem: str | None):
        def factory(in_channels: int, image_size: int):
            return resnet.ResNetBackbone(depth, stem or resnet.auto_stem(image_size), in_channels)

        return factory

    for depth in resnet.DEPTHS:
        lo = min(v[0] for v in resnet.STEM_SIZES.values())
        hi = max(v[1] for v in resnet.STEM_SIZES.values())
        register_backbone(depth, make(depth, None), lo, hi, f"torchvision {depth}, stem chosen by image size")
        for stem, (s_lo, s_hi) in resnet.STEM_SIZES.items():
            register_backbone(f"{depth}-{stem}", make(depth, stem), s_lo, s_hi, f"torchvision {depth}, {stem} stem")


_register_builtin()

__all__ = [
    "BackboneEntry",
    "available_backbones",
    "backbone_entry",
    "build_backbone",
    "count_parameters",
    "register_backbone",
]
