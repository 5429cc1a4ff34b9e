"""Augmentation: shapes and ranges, CPU and batched implementations agreeing on outputs and on
the distributions of their random parameters, and determinism under a seed."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp

from ccli.data import augment as A
from ccli.data import gpu_augment as G

RECIPES = {
    "simclr": lambda: A.simclr_view(32, 3),
    "simclr_blur": lambda: A.simclr_view(32, 3, blur=True),
    "grayscale": lambda: A.simclr_view(16, 1),
    "weak": lambda: A.weak_view(32),
    "strong": lambda: A.strong_view(32),
    "scanplus_b": lambda: A.scanplus_views(32)[1],
    "local_crop": lambda: A.multicrop_views(32, 3, n_local=1)[-1],
}


def _images(channels: int, size: int, n: int = 12, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_cpu_and_batched_agree_on_identical_parameters(name):
    aug = RECIPES[name]()
    channels = 1 if name == "grayscale" else 3
    size = 16 if name == "grayscale" else 32
    images = _images(channels, size)
    mean, std = [0.5] * channels, [0.25] * channels
    rng = random.Random(1)
    params = [A.sample_params(aug, size, size, channels, rng) for _ in range(len(images))]
    cpu = torch.stack([A.apply_single(aug, images[k], params[k], mean, std) for k in range(len(images))])
    batched = G.apply_batch(aug, images, G.params_from_single(params), mean, std)
    assert cpu.shape == batched.shape == (len(images), channels, aug.size, aug.size)
    torch.testing.assert_close(batched, cpu, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_outputs_are_in_range(name):
    aug = RECIPES[name]()
    channels = 1 if name == "grayscale" else 3
    size = 16 if name == "grayscale" else 32
    images = _images(channels, size, n=32)
    # mean 0 / std 1 keeps the 0–1 pixel scale, so the range is checkable directly.
    out = G.BatchAugmenter([aug], [0.0] * channels, [1.0] * channels)(images, torch.Generator().manual_seed(0))[0]
    assert out.dtype == torch.float32 and out.shape == (32, channels, aug.size, aug.size)
    assert float(out.min()) >= -1e-5 and float(out.max()) <= 1.0 + 1e-5
    single = A.SampleAugmenter([aug], [0.0] * channels, [1.0] * channels)(images[0], seed=3)[0]
    assert single.shape == (channels, aug.size, aug.size)
    assert -1e-5 <= float(single.min()) and float(single.max()) <= 1.0 + 1e-5


def test_normalisation_and_cutout_zero():
    aug = A.ViewAug(size=8, geometry="resize", flip_p=0.0, cutout=8)
    x = torch.full((2, 1, 8, 8), 255, dtype=torch.uint8)
    params = {"flip": torch.tensor([False, False]), "cutout": torch.tensor([[0, 0, 2], [7, 7, 1]])}
    out = G.apply_batch(aug, x, params, [0.5], [0.25])
    # (1 − 0.5) / 0.25 = 2 everywhere except the holes: a 2×2 box clipped at the corner, a single pixel.
    assert float(out[0, 0, 0, 0]) == 0.0 and float(out[0, 0, 1, 1]) == 2.0 and float(out[0, 0, 0, 1]) == 2.0
    assert float(out[1, 0, 7, 7]) == 0.0 and float((out[1] == 0).sum()) == 1


def _cpu_params(aug, n, size, channels, seed=0):
    rng = random.Random(seed)
    return G.params_from_single([A.sample_params(aug, size, size, channels, rng) for _ in range(n)])


def _batched_params(aug, n, size, channels, seed=0):
    return G.sample_batch_params(aug, n, size, size, channels, torch.Generator().manual_seed(seed))


def _same_distribution(a, b, name):
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    assert ks_2samp(a, b).pvalue > 1e-3, f"{name}: KS test rejects equal distributions"
    assert abs(a.mean() - b.mean()) < 0.05 * (abs(a.mean()) + a.std() + 1e-9), f"{name}: means differ"


def test_parameter_distributions_match_between_implementations():
    n, size = 4000, 32
    aug = A.ViewAug(size=size, scale=(0.08, 1.0), flip_p=0.5, jitter_p=0.8, brightness=0.4, contrast=0.4,
                    saturation=0.4, hue=0.1, gray_p=0.2, intensity_p=0.6, blur_p=0.5, randaug_n=2, cutout=16)
    cpu, bat = _cpu_params(aug, n, size, 3), _batched_params(aug, n, size, 3)

    def crop_stats(p):
        i, j, h, w = p["crop"].double().unbind(1)
        return h * w / size**2, torch.log(w / h), i, j

    for label, x, y in zip(("crop scale", "log aspect", "crop top", "crop left"), crop_stats(cpu), crop_stats(bat)):
        _same_distribution(x, y, label)
    for key in ("flip", "jitter", "gray", "intensity", "blur"):
        rate_c, rate_b = cpu[key].float().mean().item(), bat[key].float().mean().item()
        assert abs(rate_c - rate_b) < 0.04, f"{key}: rate {rate_c:.3f} vs {rate_b:.3f}"
    for k, label in enumerate(("brightness", "contrast", "saturation", "hue")):
        _same_distribution(cpu["jitter_factors"][:, k], bat["jitter_factors"][:, k], label)
    # The order of the four jitter operations is a uniform permutation in both.
    for pos in range(4):
        c = np.bincount(cpu["jitter_order"][:, pos].numpy(), minlength=4) / n
        b = np.bincount(bat["jitter_order"][:, pos].numpy(), minlength=4) / n
        assert np.abs(c - b).max() < 0.04
    for key in ("intensity_scale", "intensity_gamma", "blur_sigma"):
        _same_distribution(cpu[key], bat[key], key)
    _same_distribution(cpu["cutout"][:, 2], bat["cutout"][:, 2], "cutout side")
    assert int(cpu["cutout"][:, 2].min()) == int(bat["cutout"][:, 2].min()) == 1
    assert int(cpu["cutout"][:, 2].max()) == int(bat["cutout"][:, 2].max()) == 16
    ops_c = np.bincount(cpu["randaug_ops"].numpy().ravel(), minlength=14) / cpu["randaug_ops"].numel()
    ops_b = np.bincount(bat["randaug_ops"].numpy().ravel(), minlength=14) / bat["randaug_ops"].numel()
    assert np.abs(ops_c - ops_b).max() < 0.02 and np.abs(ops_b - 1 / 14).max() < 0.02
    for k, (name, lo, hi) in enumerate(A.RANDAUG_OPS):
        mags = bat["randaug_mags"][bat["randaug_ops"] == k]
        assert float(mags.min()) >= lo and float(mags.max()) <= hi, name


def test_shift_offsets_match_and_cover_the_pad():
    aug = A.weak_view(32)
    cpu, bat = _cpu_params(aug, 3000, 32, 3), _batched_params(aug, 3000, 32, 3)
    pad = int(32 * 0.125)
    for p in (cpu, bat):
        assert int(p["shift"].min()) == 0 and int(p["shift"].max()) == 2 * pad
    _same_distribution(cpu["shift"][:, 0], bat["shift"][:, 0], "shift y")


def test_cpu_crop_sampler_matches_torchvision():
    from torchvision.transforms import RandomResizedCrop

    torch.manual_seed(0)
    img = torch.zeros(1, 32, 24)
    tv = np.array([RandomResizedCrop.get_params(img, (0.08, 1.0), (3 / 4, 4 / 3)) for _ in range(3000)], float)
    rng = random.Random(0)
    ours = np.array([A.sample_crop_box(32, 24, (0.08, 1.0), (3 / 4, 4 / 3), rng) for _ in range(3000)], float)
    _same_distribution(tv[:, 2] * tv[:, 3], ours[:, 2] * ours[:, 3], "area")
    _same_distribution(np.log(tv[:, 3] / tv[:, 2]), np.log(ours[:, 3] / ours[:, 2]), "aspect")


def test_fallback_central_crop_when_no_try_fits():
    # A 4:1 image with ratio (1, 1) and scale (1, 1): no square crop has the full area, so both
    # implementations fall back to the central crop torchvision uses.
    rng = random.Random(0)
    assert A.sample_crop_box(8, 32, (1.0, 1.0), (1.0, 1.0), rng) == (0, 12, 8, 8)
    boxes = G.sample_crop_boxes(5, 8, 32, (1.0, 1.0), (1.0, 1.0), torch.Generator().manual_seed(0))
    assert boxes.tolist() == [[0, 12, 8, 8]] * 5


def test_same_seed_same_views_and_sample_views_independent_of_order():
    images = _images(3, 32, n=4)
    aug = A.simclr_view(32, 3)
    b1 = G.BatchAugmenter([aug, aug], [0.5] * 3, [0.25] * 3)(images, torch.Generator().manual_seed(5))
    b2 = G.BatchAugmenter([aug, aug], [0.5] * 3, [0.25] * 3)(images, torch.Generator().manual_seed(5))
    torch.testing.assert_close(b1[0], b2[0])
    assert not torch.equal(b1[0], b1[1])  # two views of one image differ
    sample = A.SampleAugmenter([aug, aug], [0.5] * 3, [0.25] * 3)
    first = sample(images[0], seed=9)
    sample(images[1], seed=10)
    again = sample(images[0], seed=9)
    torch.testing.assert_close(first[0], again[0])


def test_grayscale_recipe_uses_intensity_jitter_and_no_colour_ops():
    view = A.simclr_view(28, 1)
    assert view.intensity_p == 0.8 and view.saturation == 0.0 and view.hue == 0.0 and view.gray_p == 0.0
    x = _images(1, 28, n=64)
    p = G.sample_batch_params(view, 64, 28, 28, 1, torch.Generator().manual_seed(0))
    p["jitter"][:] = False
    p["flip"][:] = False
    p["crop"] = torch.tensor([[0, 0, 28, 28]] * 64)
    p["intensity"][:] = True
    p["intensity_scale"][:] = 1.0
    p["intensity_gamma"][:] = 2.0
    out = G.apply_batch(view, x, p, [0.0], [1.0])
    torch.testing.assert_close(out, (x.float() / 255) ** 2, atol=1e-5, rtol=0)


def test_multicrop_recipe():
    views = A.multicrop_views(32, 3, n_global=2, n_local=4)
    assert [v.size for v in views] == [32, 32, 14, 14, 14, 14]
    assert views[0].scale == (0.4, 1.0) and views[0].gray_p == 0.0 and views[0].blur_p == 0.0
    assert views[2].scale == (0.05, 0.4) and views[2].gray_p == 0.2 and views[2].blur_p == 0.5
    assert math.isclose(views[0].brightness, 0.8) and math.isclose(views[0].hue, 0.2)
