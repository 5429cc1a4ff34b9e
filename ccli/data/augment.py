"""Augmentation recipes, and their per-sample CPU implementation (torchvision, in DataLoader workers).

One `ViewAug` describes how one view of an image is made. The same recipe runs in two
implementations that draw their random parameters from the same distributions:

- `SampleAugmenter` (this module): one image at a time with torchvision.transforms.v2
  functional ops, parameters from a `random.Random`; it runs inside DataLoader workers
  (`--augment-on cpu`).
- `BatchAugmenter` (`ccli.data.gpu_augment`): a whole uint8 batch held on the device, with
  per-sample parameters drawn as tensors and applied in batched kernels (per-sample affine
  grids, per-sample jitter factors; `--augment-on gpu`). It runs on CPU tensors as well.

Both expose `sample_params` returning the same named parameters, so tests can compare the
two distributions directly, and `apply(images, params)`, so they can be compared on
identical parameters.

Order of operations for a view (every step optional):

    geometry (random-resized crop | flip-and-shift | resize) → horizontal flip
    → RandAugment(n) → colour jitter (p) → grayscale (p) → intensity jitter (p)
    → Gaussian blur (p) → normalise (mean/std) → Cutout (zeroes in normalised space)

Recipes (constructors below; values and sources in each docstring):
`simclr_view`, `grayscale_simclr_view`, `multicrop_views`, `weak_view`, `strong_view`,
`scanplus_views`, `eval_view`. Parameters that differ per image: crop box (i, j, h, w),
flip, jitter on/off, brightness/contrast/saturation/hue factors and their order, grayscale,
intensity scale and gamma, blur sigma, RandAugment ops and magnitudes, cutout centre and side.

Given the same parameters the two implementations produce the same pixels (to float rounding;
tests/test_augment.py checks every recipe).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

# The 14 RandAugment operations of SCAN's `data/augment.py` with their magnitude ranges
# (scanplus.md §4.3; SCAN-CODE). A magnitude is drawn uniformly in [lo, hi] per use.
RANDAUG_OPS: tuple[tuple[str, float, float], ...] = (
    ("identity", 0.0, 1.0),
    ("autocontrast", 0.0, 1.0),
    ("equalize", 0.0, 1.0),
    ("rotate", -30.0, 30.0),  # degrees
    ("solarize", 0.0, 256.0),  # threshold on the 0–255 scale
    ("color", 0.05, 0.95),  # saturation blend factor
    ("contrast", 0.05, 0.95),
    ("brightness", 0.05, 0.95),
    ("sharpness", 0.05, 0.95),
    ("shear_x", -0.1, 0.1),  # shear coefficient
    ("translate_x", -0.1, 0.1),  # fraction of the width
    ("translate_y", -0.1, 0.1),
    ("posterize", 4.0, 8.0),  # bits, truncated to an integer as SCAN's int(v) does
    ("shear_y", -0.1, 0.1),
)
RANDAUG_NAMES = tuple(name for name, _, _ in RANDAUG_OPS)


@dataclass(frozen=True)
class ViewAug:
    """How one view is made. Every probability 0 disables its step."""

    size: int  # output side in pixels
    geometry: str = "crop"  # "crop" (random resized crop) | "shift" (pad-reflect and random crop) | "resize"
    scale: tuple[float, float] = (0.2, 1.0)  # crop area as a fraction of the image
    ratio: tuple[float, float] = (3 / 4, 4 / 3)  # crop aspect ratio w/h
    shift: float = 0.125  # "shift": maximal translation as a fraction of the side (FixMatch 12.5%)
    flip_p: float = 0.5
    jitter_p: float = 0.0  # probability of applying colour jitter
    brightness: float = 0.0  # factor ~ U[max(0, 1−b), 1+b]
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0  # shift ~ U[−h, h]
    gray_p: float = 0.0
    intensity_p: float = 0.0  # grayscale intensity jitter: x ← clip(s · x^γ)
    intensity_scale: tuple[float, float] = (0.5, 1.5)  # s ~ U[lo, hi]
    intensity_gamma: tuple[float, float] = (0.5, 2.0)  # log γ ~ U[log lo, log hi]
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel: int = 0  # 0: about 10% of the output side, odd (SimCLR)
    randaug_n: int = 0  # RandAugment ops per image, drawn with replacement (SCAN)
    cutout: int = 0  # maximal Cutout side; 0 disables Cutout

    @property
    def kernel_size(self) -> int:
        k = self.blur_kernel or max(3, int(round(self.size * 0.1)))
        return k if k % 2 == 1 else k + 1


# ------------------------------------------------------------------------------------------
# Recipes
# ------------------------------------------------------------------------------------------
def simclr_view(size: int, channels: int = 3, strength: float = 1.0, scale=(0.2, 1.0), blur: bool | None = None,
                intensity_p: float | None = None) -> ViewAug:
    """The SimCLR view (cctc-and-cdec.md §6.2, GCC-CODE): RRC(scale 0.2–1), flip 0.5,
    ColorJitter(0.4, 0.4, 0.4, 0.1)·strength with p 0.8, grayscale p 0.2, and Gaussian blur
    (p 0.5, σ 0.1–2, kernel 10% of the side) at 96 px and above (SimCLR; PROPOSED threshold).
    Grayscale data get `grayscale_simclr_view` instead (intensity jitter on)."""
    if channels == 1:
        return grayscale_simclr_view(size, strength=strength, scale=scale,
                                     intensity_p=0.8 if intensity_p is None else intensity_p)
    use_blur = size >= 96 if blur is None else blur
    return ViewAug(size=size, scale=tuple(scale), flip_p=0.5, jitter_p=0.8, brightness=0.4 * strength,
                   contrast=0.4 * strength, saturation=0.4 * strength, hue=0.1 * strength, gray_p=0.2,
                   blur_p=0.5 if use_blur else 0.0, intensity_p=intensity_p or 0.0)


def grayscale_simclr_view(size: int, strength: float = 1.0, scale=(0.2, 1.0), intensity_p: float = 0.8,
                          intensity_scale=(0.5, 1.5), intensity_gamma=(0.5, 2.0)) -> ViewAug:
    """SimCLR for 1-channel images: RRC + flip + brightness/contrast jitter (p 0.8) + intensity
    jitter (p 0.8; per-image scale s ~ U[0.5, 1.5] and gamma log-uniform in [0.5, 2]).
    Saturation, hue and grayscale are meaningless on one channel. Without the intensity jitter
    SimCLR features on Fashion-MNIST cluster worse than raw pixels (issue 3); ranges PROPOSED."""
    return ViewAug(size=size, scale=tuple(scale), flip_p=0.5, jitter_p=0.8, brightness=0.4 * strength,
                   contrast=0.4 * strength, intensity_p=intensity_p, intensity_scale=tuple(intensity_scale),
                   intensity_gamma=tuple(intensity_gamma))


def multicrop_views(size: int, channels: int = 3, n_global: int = 2, n_local: int = 6, local_size: int | None = None,
                    global_scale=(0.4, 1.0), local_scale=(0.05, 0.4), strength: float = 1.0) -> list[ViewAug]:
    """Multi-crop (dcacn.md §2.2): 2 global views (RRC 0.4–1, flip, ColorJitter(0.8s,0.8s,0.8s,0.2s)
    p 0.8, no grayscale, no blur) and n_local local views (RRC 0.05–0.4 at local_size, flip, the
    same jitter, grayscale p 0.2, blur p 0.5). local_size defaults to 96/224 of the global size."""
    local_size = local_size or max(8, int(round(size * 96 / 224)))
    jitter = dict(jitter_p=0.8, brightness=0.8 * strength, contrast=0.8 * strength)
    if channels == 3:
        jitter.update(saturation=0.8 * strength, hue=0.2 * strength)
    else:
        jitter.update(intensity_p=0.8)
    glob = ViewAug(size=size, scale=tuple(global_scale), flip_p=0.5, **jitter)
    loc = ViewAug(size=local_size, scale=tuple(local_scale), flip_p=0.5, gray_p=0.2 if channels == 3 else 0.0,
                  blur_p=0.5, **jitter)
    return [glob] * n_global + [loc] * n_local


def weak_view(size: int, flip_p: float = 0.5) -> ViewAug:
    """FixMatch's weak augmentation, the scan+ β (scanplus.md §5.1): flip, then a random
    translation of up to 12.5% of the side with reflect padding. `flip_p` 0 drops the flip
    for data whose mirror image is another class (digits)."""
    return ViewAug(size=size, geometry="shift", shift=0.125, flip_p=flip_p)


def default_cutout(size: int) -> int:
    """Cutout's maximal side: 16 at 32 px, 32 at 96 px, 75 at 224 px (SCAN configs); size/3 otherwise (PROPOSED)."""
    return {32: 16, 96: 32, 224: 75}.get(size, max(1, size // 3))


def strong_view(size: int, n_ops: int = 4, cutout: int | None = None, flip_p: float = 0.5) -> ViewAug:
    """The scan+ strong augmentation α (scanplus.md §5.1, §8): flip and shift, RandAugment with
    4 ops from SCAN's 14-op list, then Cutout with one hole of side U{1..L}."""
    return ViewAug(size=size, geometry="shift", shift=0.125, flip_p=flip_p, randaug_n=n_ops,
                   cutout=default_cutout(size) if cutout is None else cutout)


def scanplus_views(size: int, n_ops: int = 4, cutout: int | None = None, scale=(0.2, 1.0)) -> list[ViewAug]:
    """scan+ stage-1 views (scanplus.md §4.3, PROPOSED there): t_a = RRC(0.2–1) → flip → RandAug(4);
    t_b = the same plus Cutout(1, L)."""
    t_a = ViewAug(size=size, scale=tuple(scale), flip_p=0.5, randaug_n=n_ops)
    return [t_a, replace(t_a, cutout=default_cutout(size) if cutout is None else cutout)]


def eval_view(size: int) -> ViewAug:
    """No augmentation: resize to the side if needed, normalise."""
    return ViewAug(size=size, geometry="resize", flip_p=0.0)


# ------------------------------------------------------------------------------------------
# Normalisation statistics
# ------------------------------------------------------------------------------------------
def channel_stats(images, max_images: int = 10000, seed: int = 0) -> tuple[list[float], list[float]]:
    """Per-channel mean and std on the 0–1 scale of uint8 images [N, H, W, C] (a fixed subset when large)."""
    import numpy as np

    n = len(images)
    if n > max_images:
        pick = np.sort(np.random.default_rng(seed).choice(n, max_images, replace=False))
        images = images[pick]
    x = np.asarray(images, dtype=np.float64) / 255.0
    mean = x.mean(axis=(0, 1, 2))
    std = x.std(axis=(0, 1, 2))
    std = np.where(std < 1e-6, 1.0, std)
    return [float(v) for v in mean], [float(v) for v in std]


# ------------------------------------------------------------------------------------------
# Parameter sampling for one image (the distributions BatchAugmenter reproduces in batch)
# ------------------------------------------------------------------------------------------
def sample_crop_box(height: int, width: int, scale, ratio, rng: random.Random) -> tuple[int, int, int, int]:
    """torchvision RandomResizedCrop.get_params with an explicit RNG: 10 tries, then a central crop."""
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            i = rng.randint(0, height - h)
            j = rng.randint(0, width - w)
            return i, j, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w = width
        h = int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        h = height
        w = int(round(h * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def sample_params(aug: ViewAug, height: int, width: int, channels: int, rng: random.Random) -> dict[str, Any]:
    """All random parameters of one view of one image, as plain Python values."""
    p: dict[str, Any] = {}
    if aug.geometry == "crop":
        p["crop"] = sample_crop_box(height, width, aug.scale, aug.ratio, rng)
    elif aug.geometry == "shift":
        pad = int(aug.size * aug.shift)
        p["shift"] = (rng.randint(0, 2 * pad), rng.randint(0, 2 * pad))
    p["flip"] = rng.random() < aug.flip_p
    if aug.randaug_n:
        ops = [rng.randrange(len(RANDAUG_OPS)) for _ in range(aug.randaug_n)]
        p["randaug"] = [(k, RANDAUG_OPS[k][1] + (RANDAUG_OPS[k][2] - RANDAUG_OPS[k][1]) * rng.random()) for k in ops]
    if aug.jitter_p:
        p["jitter"] = rng.random() < aug.jitter_p
        p["jitter_factors"] = (
            rng.uniform(max(0.0, 1 - aug.brightness), 1 + aug.brightness),
            rng.uniform(max(0.0, 1 - aug.contrast), 1 + aug.contrast),
            rng.uniform(max(0.0, 1 - aug.saturation), 1 + aug.saturation),
            rng.uniform(-aug.hue, aug.hue),
        )
        order = [0, 1, 2, 3]
        rng.shuffle(order)
        p["jitter_order"] = tuple(order)
    if aug.gray_p:
        p["gray"] = rng.random() < aug.gray_p
    if aug.intensity_p:
        p["intensity"] = rng.random() < aug.intensity_p
        p["intensity_scale"] = rng.uniform(*aug.intensity_scale)
        p["intensity_gamma"] = math.exp(rng.uniform(math.log(aug.intensity_gamma[0]), math.log(aug.intensity_gamma[1])))
    if aug.blur_p:
        p["blur"] = rng.random() < aug.blur_p
        p["blur_sigma"] = rng.uniform(*aug.blur_sigma)
    if aug.cutout:
        p["cutout"] = (rng.randrange(aug.size), rng.randrange(aug.size), rng.randint(1, aug.cutout))
    return p


# ------------------------------------------------------------------------------------------
# Per-sample application with torchvision (the CPU path)
# ------------------------------------------------------------------------------------------
def _affine_args(name: str, magnitude: float, size: int) -> dict[str, Any]:
    """RandAugment geometric ops as torchvision F.affine arguments (about the image centre)."""
    args = dict(angle=0.0, translate=[0.0, 0.0], scale=1.0, shear=[0.0, 0.0])
    if name == "rotate":
        args["angle"] = magnitude
    elif name == "shear_x":
        args["shear"] = [math.degrees(math.atan(magnitude)), 0.0]
    elif name == "shear_y":
        args["shear"] = [0.0, math.degrees(math.atan(magnitude))]
    elif name == "translate_x":
        args["translate"] = [magnitude * size, 0.0]
    elif name == "translate_y":
        args["translate"] = [0.0, magnitude * size]
    return args


def randaug_op_single(x, name: str, magnitude: float):
    """One RandAugment op on one float image [C, H, W] in [0, 1] (torchvision v2 functional)."""
    import torch
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    if name == "identity":
        return x
    if name == "autocontrast":
        return TF.autocontrast(x)
    if name == "equalize":
        return TF.equalize(x)
    if name in ("rotate", "shear_x", "shear_y", "translate_x", "translate_y"):
        return TF.affine(x, **_affine_args(name, magnitude, x.shape[-1]), interpolation=InterpolationMode.NEAREST,
                         fill=0.0)
    if name == "solarize":
        return TF.solarize(x, magnitude / 255.0)
    if name == "color":
        return TF.adjust_saturation(x, magnitude)
    if name == "contrast":
        return TF.adjust_contrast(x, magnitude)
    if name == "brightness":
        return TF.adjust_brightness(x, magnitude)
    if name == "sharpness":
        return TF.adjust_sharpness(x, magnitude)
    if name == "posterize":
        levels = 1 << int(magnitude)
        return torch.floor(x * levels).clamp_(0, levels - 1) / levels
    raise ValueError(f"unknown RandAugment op {name!r}")


def apply_single(aug: ViewAug, image, params: dict[str, Any], mean: Sequence[float], std: Sequence[float]):
    """One view of one uint8 image [C, H, W] → normalised float [C, size, size]."""
    import torch
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    x = image.float().div_(255.0) if image.dtype == torch.uint8 else image.float()
    c, h, w = x.shape
    if "crop" in params:
        i, j, ch, cw = params["crop"]
        x = TF.resized_crop(x, i, j, ch, cw, [aug.size, aug.size], interpolation=InterpolationMode.BILINEAR,
                            antialias=True)
    else:
        if (h, w) != (aug.size, aug.size):
            x = TF.resize(x, [aug.size, aug.size], interpolation=InterpolationMode.BILINEAR, antialias=True)
        if "shift" in params:
            pad = int(aug.size * aug.shift)
            dy, dx = params["shift"]
            x = torch.nn.functional.pad(x[None], (pad, pad, pad, pad), mode="reflect")[0]
            x = x[:, dy : dy + aug.size, dx : dx + aug.size]
    if params.get("flip"):
        x = x.flip(-1)
    for k, magnitude in params.get("randaug", ()):
        x = randaug_op_single(x, RANDAUG_NAMES[k], magnitude)
    if params.get("jitter"):
        b, con, sat, hue = params["jitter_factors"]
        for op in params["jitter_order"]:
            if op == 0 and aug.brightness:
                x = TF.adjust_brightness(x, b)
            elif op == 1 and aug.contrast:
                x = TF.adjust_contrast(x, con)
            elif op == 2 and aug.saturation and c == 3:
                x = TF.adjust_saturation(x, sat)
            elif op == 3 and aug.hue and c == 3:
                x = TF.adjust_hue(x, hue)
    if params.get("gray") and c == 3:
        x = TF.rgb_to_grayscale(x, num_output_channels=3)
    if params.get("intensity"):
        x = (params["intensity_scale"] * x.clamp(min=0.0) ** params["intensity_gamma"]).clamp_(0.0, 1.0)
    if params.get("blur"):
        sigma = params["blur_sigma"]
        x = TF.gaussian_blur(x, [aug.kernel_size, aug.kernel_size], [sigma, sigma])
    x = TF.normalize(x, list(mean), list(std))
    if "cutout" in params:
        cy, cx, length = params["cutout"]
        y0, y1 = max(0, cy - length // 2), min(aug.size, cy - length // 2 + length)
        x0, x1 = max(0, cx - length // 2), min(aug.size, cx - length // 2 + length)
        x[:, y0:y1, x0:x1] = 0.0
    return x.contiguous()


class SampleAugmenter:
    """Per-sample CPU implementation of a list of views (picklable, for DataLoader workers).

    `augmenter(image_u8_chw, seed)` returns one normalised float tensor per view. The seed
    fixes every random draw, so a sample's views do not depend on which worker makes them.
    """

    def __init__(self, views: Sequence[ViewAug], mean: Sequence[float], std: Sequence[float]):
        self.views = list(views)
        self.mean = list(mean)
        self.std = list(std)

    def sample_params(self, view: int, height: int, width: int, channels: int, rng: random.Random) -> dict[str, Any]:
        return sample_params(self.views[view], height, width, channels, rng)

    def __call__(self, image, seed: int):
        rng = random.Random(seed)
        c, h, w = image.shape
        out = []
        for aug in self.views:
            params = sample_params(aug, h, w, c, rng)
            out.append(apply_single(aug, image, params, self.mean, self.std))
        return out


@dataclass
class AugmentPlan:
    """What a method asks of the data path: the views per image and the normalisation."""

    views: list[ViewAug]
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
