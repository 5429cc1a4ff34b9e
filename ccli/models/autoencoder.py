"""Autoencoders of the thesis methods `selfpaced` (Ch. 3) and `graph` (Ch. 4).

Two kinds, one interface: `ae(x) -> (h, reconstruction, target)`, so a method's reconstruction
loss is `mse(reconstruction, target)` whichever kind it trains.

- `ConvAutoencoder`: a convolutional encoder to a d-dim code and its mirror decoder, which
  reconstructs exactly the input size (checked when built). Three layouts, one per image side
  (selfpaced-and-graph.md; none is given by the thesis, all are the spec's PROPOSED ones):
    * 28 px (§3.3, S12): the DEC-family CAE, Conv(32, 5, s2) → Conv(64, 5, s2) → Conv(128, 3, s2, p0)
      → 1152 → d, decoder Linear → ConvT(64, 3, s2) → ConvT(32, 5, s2, p2, op1) → ConvT(C, 5, s2, p2, op1);
    * 32 px (§4.7, CIFAR): Conv(64) → Conv(128) → Conv(256), all 3×3 s2 p1, → 4096 → d, decoder
      ConvT(4, s2, p1) mirrored;
    * 96 px (§4.7, STL-10): Conv(32) → Conv(64) → Conv(128) → Conv(256) → 9216 → d, mirrored.
  Hidden layers are ReLU; the code is linear (`bottleneck_act="none"`, DEC's convention, S13)
  or ReLU (`"relu"`, the thesis's "all layers ReLU"); the reconstruction is linear.
- `FeatureAutoencoder` (§3.3, RGB): a frozen torchvision ResNet-50 gives global-average-pooled
  2048-d features of ImageNet-normalised images, and an MLP autoencoder 2048-500-500-1000-d
  (mirror decoder) reconstructs those features (S11). ImageNet weights cannot be downloaded
  here: `load_backbone_weights` takes a local torchvision weights file and refuses one that is
  not a ResNet-50's; without one the trunk keeps torchvision's random initialisation.

Backbone names registered here (their forward is the encoder: images → [B, d]):
`cae28`, `cae32`, `cae96` (10-d code) and `resnet50-feature-ae` (20-d code).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ccli.errors import BadInput
from ccli.models import register_backbone

# side -> (encoder convs as (out_channels, kernel, stride, padding), decoder transposed convs as
# (out_channels or None for the image's channels, kernel, stride, padding, output_padding), code map side)
LAYOUTS: dict[int, tuple] = {
    28: ([(32, 5, 2, 2), (64, 5, 2, 2), (128, 3, 2, 0)],
         [(64, 3, 2, 0, 0), (32, 5, 2, 2, 1), (None, 5, 2, 2, 1)], 3),
    32: ([(64, 3, 2, 1), (128, 3, 2, 1), (256, 3, 2, 1)],
         [(128, 4, 2, 1, 0), (64, 4, 2, 1, 0), (None, 4, 2, 1, 0)], 4),
    96: ([(32, 3, 2, 1), (64, 3, 2, 1), (128, 3, 2, 1), (256, 3, 2, 1)],
         [(128, 4, 2, 1, 0), (64, 4, 2, 1, 0), (32, 4, 2, 1, 0), (None, 4, 2, 1, 0)], 6),
}
DEFAULT_LATENT = {28: 10, 32: 512, 96: 512}  # 10: thesis §3.3 (grayscale d); 512: spec §4.7 (CIFAR/STL)
BOTTLENECK_ACTS = ("none", "relu")
FEATURE_DIMS = (500, 500, 1000)  # thesis §3.3: 2048-500-500-1000-d
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _act(kind: str) -> nn.Module:
    if kind not in BOTTLENECK_ACTS:
        raise BadInput(f"bottleneck_act={kind} is not one of {', '.join(BOTTLENECK_ACTS)}.")
    return nn.ReLU() if kind == "relu" else nn.Identity()


class ConvEncoder(nn.Module):
    """Images [B, C, S, S] → codes [B, d]."""

    def __init__(self, in_channels: int, image_size: int, latent_dim: int, bottleneck_act: str = "none"):
        super().__init__()
        if image_size not in LAYOUTS:
            raise BadInput(f"the convolutional autoencoder takes 28, 32 or 96 px images, not {image_size} px "
                           "(set image_size=28, 32 or 96).")
        convs, _, side = LAYOUTS[image_size]
        layers: list[nn.Module] = []
        c = in_channels
        for out, k, s, p in convs:
            layers += [nn.Conv2d(c, out, k, s, p), nn.ReLU()]
            c = out
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.code = nn.Sequential(nn.Linear(c * side * side, latent_dim), _act(bottleneck_act))
        self.out_dim = int(latent_dim)
        self.in_channels, self.image_size = int(in_channels), int(image_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.code(self.features(x))


class ConvDecoder(nn.Module):
    """Codes [B, d] → reconstructions [B, C, S, S] (linear output)."""

    def __init__(self, in_channels: int, image_size: int, latent_dim: int):
        super().__init__()
        convs, deconvs, side = LAYOUTS[image_size]
        top = convs[-1][0]
        self.shape = (top, side, side)
        self.fc = nn.Sequential(nn.Linear(latent_dim, top * side * side), nn.ReLU())
        layers: list[nn.Module] = []
        c = top
        for number, (out, k, s, p, op) in enumerate(deconvs):
            out = in_channels if out is None else out
            layers.append(nn.ConvTranspose2d(c, out, k, s, p, output_padding=op))
            if number < len(deconvs) - 1:
                layers.append(nn.ReLU())
            c = out
        self.deconv = nn.Sequential(*layers)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.fc(h).view(len(h), *self.shape))


class ConvAutoencoder(nn.Module):
    """Encoder and mirror decoder; `forward(x)` returns (h, reconstruction, x)."""

    def __init__(self, in_channels: int, image_size: int, latent_dim: int | None = None, bottleneck_act: str = "none"):
        super().__init__()
        latent_dim = int(latent_dim or DEFAULT_LATENT.get(image_size, 10))
        self.encoder = ConvEncoder(in_channels, image_size, latent_dim, bottleneck_act)
        self.decoder = ConvDecoder(in_channels, image_size, latent_dim)
        with torch.no_grad():
            out = self.decoder(torch.zeros(1, latent_dim)).shape
        if tuple(out[1:]) != (in_channels, image_size, image_size):  # the layouts are built to give this
            raise ValueError(f"decoder gives {tuple(out[1:])} for {in_channels}×{image_size}×{image_size} inputs")

    def forward(self, x: torch.Tensor):
        h = self.encoder(x)
        return h, self.decoder(h), x


def _mlp(dims: Sequence[int], last_act: nn.Module) -> nn.Sequential:
    layers: list[nn.Module] = []
    for number, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        layers.append(nn.ReLU() if number < len(dims) - 2 else last_act)
    return nn.Sequential(*layers)


class FrozenResNet50(nn.Module):
    """torchvision ResNet-50 without its classifier, frozen and always in eval mode: images in [0, 1] → [B, 2048]."""

    def __init__(self):
        super().__init__()
        from torchvision.models import resnet50

        self.net = resnet50(weights=None)
        self.net.fc = nn.Identity()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.out_dim = 2048
        self.net.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self.net.eval()  # frozen: BatchNorm statistics never move
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.net((x - self.mean) / self.std)


class FeatureEncoder(nn.Module):
    """Images → frozen ResNet-50 features → 2048-500-500-1000-d code."""

    def __init__(self, latent_dim: int = 20, bottleneck_act: str = "none"):
        super().__init__()
        self.trunk = FrozenResNet50()
        self.mlp = _mlp((2048, *FEATURE_DIMS, latent_dim), _act(bottleneck_act))
        self.out_dim = int(latent_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.trunk(x))


class FeatureAutoencoder(nn.Module):
    """`forward(x)` returns (h, reconstructed features, the frozen features)."""

    def __init__(self, latent_dim: int = 20, bottleneck_act: str = "none"):
        super().__init__()
        self.encoder = FeatureEncoder(latent_dim, bottleneck_act)
        self.decoder = _mlp((latent_dim, *reversed(FEATURE_DIMS), 2048), nn.Identity())

    def forward(self, x: torch.Tensor):
        f = self.encoder.trunk(x)
        h = self.encoder.mlp(f)
        return h, self.decoder(h), f


def build_autoencoder(backbone: str, in_channels: int, image_size: int, latent_dim: int | None = None,
                      bottleneck_act: str = "none") -> nn.Module:
    """The autoencoder a backbone name stands for (`cae28`/`cae32`/`cae96`, `resnet50-feature-ae`)."""
    if backbone == "resnet50-feature-ae":
        if in_channels != 3:
            raise BadInput(f"backbone resnet50-feature-ae takes 3-channel images, not {in_channels}-channel ones.")
        return FeatureAutoencoder(int(latent_dim or 20), bottleneck_act)
    if backbone in CAE_NAMES:
        side = CAE_NAMES[backbone]
        if image_size != side:
            raise BadInput(f"backbone {backbone} takes {side} px images, but this run's views are {image_size} px "
                           f"(set image_size={side}).")
        return ConvAutoencoder(in_channels, image_size, latent_dim, bottleneck_act)
    raise BadInput(f"backbone {backbone} is not an autoencoder (valid: {', '.join([*CAE_NAMES, 'resnet50-feature-ae'])}).")


def load_backbone_weights(trunk: FrozenResNet50, path, what: str = "backbone_weights") -> None:
    """Load a local torchvision ResNet-50 weights file (a state dict, with or without `fc.*`) into the trunk."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise BadInput(f"{what}={path} does not exist." if not path.exists() else f"{what}={path} is not a file.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a file that is not a checkpoint
        raise BadInput(f"{what}={path} cannot be read as torch weights ({type(exc).__name__}).") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BadInput(f"{what}={path} is not a state dict of tensors (a torchvision weights file is one).")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    expected = trunk.net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if tuple(state[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or wrong:
        first = (f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}" if unexpected
                 else f"{wrong[0]} is {tuple(state[wrong[0]].shape)}, not {tuple(expected[wrong[0]].shape)}")
        raise BadInput(f"{what}={path} does not hold torchvision ResNet-50 weights ({first}).")
    trunk.net.load_state_dict(state, strict=True)


CAE_NAMES = {"cae28": 28, "cae32": 32, "cae96": 96}


def _register() -> None:
    for name, side in CAE_NAMES.items():
        def factory(in_channels: int, image_size: int, side=side):
            return ConvEncoder(in_channels, image_size, DEFAULT_LATENT[side])

        register_backbone(name, factory, side, side, f"convolutional autoencoder encoder for {side} px images")

    def feature(in_channels: int, image_size: int):
        return FeatureEncoder()

    register_backbone("resnet50-feature-ae", feature, 32, 1024,
                      "frozen ResNet-50 pooled features → MLP autoencoder encoder 2048-500-500-1000-20")


_register()
