"""`--preset auto`: which recipe it starts from, the values it sets and the line that explains them."""

from __future__ import annotations

import pytest

from ccli.auto_preset import auto_sets, choose, resolve
from ccli.config import flat_config, load_preset
from ccli.errors import BadInput


def _method(name):
    from ccli.methods import registry

    return registry.load(registry.get(name)).Config


def _choose(method, n, h, w, c, device="cpu", image_size=None):
    config = _method(method)
    return choose(n, h, w, c, device, image_size, load_preset(method, "digits" if n <= 10_000 else "fashion-mnist"),
                  flat_config(config()))


def test_small_grayscale_sets_start_from_the_digits_recipe_scaled_to_equal_images_seen():
    cc = _choose("cc", 600, 8, 8, 1)
    # 200 epochs × 1,797 / 600 = 599, capped at 500; batch 128 gives 4 steps per epoch, under 8:
    # the largest power of two ≤ 600/8 = 75 is 64
    assert cc.base == "digits" and cc.values == {"epochs": 500, "batch_size": 64}
    assert cc.summary() == (
        "preset auto: 600 grayscale 8×8 images on cpu → the digits recipe (tuned on 1,797 8×8 digits): 500 epochs "
        "(its 200 × 1,797/600 images: as many images seen as on digits, at most 500); batches of 64 images (its 128 "
        "would make only 4 updates per epoch on 600 images; 64 makes 9); images at their own 8 px "
        "(--preset NAME to choose another)")
    assert _choose("cc", 1797, 8, 8, 1).values == {"epochs": 200}  # the recipe itself on its own size
    # gcc 70 epochs, 30 warm-up: 70 × 1797/600 = 209.65 → 210, the warm-up alike (×3) → 90
    gcc = _choose("gcc", 600, 8, 8, 1)
    assert gcc.values == {"epochs": 210, "simclr_epochs": 90, "batch_size": 64}
    # the other counts are said in words, with the recipe's own, never as config keys
    assert ("210 epochs (its 70 × 1,797/600 images: as many images seen as on digits); scaled alike: 90 SimCLR "
            "warm-up epochs (its 30);") in gcc.summary() and "simclr_epochs" not in gcc.summary()
    # cctc's δ switch is an epoch too: 38 × 3 = 114 (its warm-up 30 × 3 = 90)
    cctc = _choose("cctc", 600, 8, 8, 1)
    assert cctc.values == {"epochs": 210, "simclr_epochs": 90, "delta_switch": 114, "batch_size": 64}
    assert "scaled alike: δ switching at epoch 114 (its 38), 90 SimCLR warm-up epochs (its 30);" in cctc.summary()
    assert "scaled alike: 250 embedding-stage epochs (its 100);" in _choose("cdec", 600, 8, 8, 1).summary()
    # 200 images: 200/8 = 25 rows would be too few to contrast; the floor is 32
    assert _choose("cc", 200, 8, 8, 1).values["batch_size"] == 32
    # graph's batch 599 (a third of digits per self-expression batch) is its own choice: kept while it fits
    assert "batch_size" not in _choose("graph", 600, 8, 8, 1).values
    # selfpaced's recipe batch 256 is an ordinary contrastive batch: 600/256 = 2 steps, so 64 (9 steps)
    assert _choose("selfpaced", 600, 8, 8, 1).values["batch_size"] == 64
    # 100 images: the recipe's batch 128 does not fit; 32 is the largest power of two ≤ 50
    tiny = _choose("cc", 100, 8, 8, 1)
    assert tiny.values == {"epochs": 500, "batch_size": 32}
    assert "batches of 32 images (its 128 is more than the 100 images)" in tiny.summary()
    # bigger grayscale images are resized to 28 px, non-square ones centre-cropped
    assert _choose("cc", 600, 64, 64, 1).values["image_size"] == 28
    assert _choose("cc", 600, 8, 10, 1).values["image_size"] == 8
    # a recipe that fixes its size (selfpaced's 28 px autoencoder) keeps it
    selfpaced = _choose("selfpaced", 600, 8, 8, 1)
    assert "image_size" not in selfpaced.values and "images resized to 28 px (the recipe's size)" in selfpaced.summary()
    # on a GPU torch's threads, the recipe otherwise
    assert _choose("cc", 600, 8, 8, 1, "cuda").values == {"epochs": 500, "batch_size": 64, "threads": 0}


def test_large_grayscale_sets_start_from_the_fashion_mnist_recipe():
    # 15 epochs × 70,000 / 35,000 = 30
    big = _choose("cc", 35_000, 28, 28, 1)
    assert big.base == "fashion-mnist" and big.values == {"epochs": 30}
    assert "the fashion-mnist recipe (tuned on 70,000 28×28 Fashion-MNIST images): 30 epochs" in big.summary()
    assert _choose("cc", 200_000, 28, 28, 1).values == {"epochs": 15}  # never under the recipe's own


def test_colour_images_keep_the_sized_defaults():
    small = choose(600, 28, 28, 3, "cpu")
    assert small.base is None
    assert small.values == {"backbone": "small_cnn", "image_size": None, "epochs": 333, "threads": 1}
    assert small.summary() == (
        "preset auto: 600 colour 28×28 images on cpu → the method's defaults sized to the machine: a small CNN "
        "(small_cnn); images at their own 28 px; 333 epochs; 1 CPU thread (--preset NAME to choose another)")
    photos = choose(100_000, 500, 375, 3, "cuda")
    assert photos.values == {"backbone": "resnet34", "image_size": 96, "epochs": 50, "threads": 0}
    # a method's default batch (CC's 256) bigger than the set
    assert choose(200, 32, 32, 3, "cpu", defaults={"engine.batch_size": 256}).values["batch_size"] == 64
    assert auto_sets(small, ["backbone", "image_size", "engine.epochs", "engine.threads"], given={"epochs"}) == [
        "backbone=small_cnn", "image_size=null", "threads=1"]


def test_resolve_on_a_dataset():
    cc = _method("cc")
    # the bundled digits are the recipe's own data: its preset, its epochs; the user's --set comes after
    preset, sets, line = resolve(None, "digits", "all", "cpu", cc, "cc", ["lr=0.1"], {"epochs": None})
    assert preset == "digits" and sets == ["epochs=200", "lr=0.1"] and "its 200 epochs" in line
    # one epoch count given: none is scaled
    preset, sets, line = resolve("auto", "digits", "all", "cpu", cc, "cc", [], {"epochs": 3})
    assert preset == "digits" and sets == [] and "epochs" not in line
    # kmeans from images: its digits recipe, the pretraining (simclr-digits, 100 epochs) alike
    preset, sets, line = resolve(None, "digits", "all", "cpu", _method("kmeans"), "kmeans")
    assert preset == "digits" and sets == ["pretrain_epochs=100"] and "its 100 pretraining epochs" in line
    # with a --checkpoint (or --features) the pretraining does not run: its epochs are neither set nor said
    preset, sets, line = resolve(None, "digits", "all", "cpu", _method("kmeans"), "kmeans", pretrained=True)
    assert preset == "digits" and sets == [] and "pretraining" not in line
    scan = choose(600, 8, 8, 1, "cpu", None, load_preset("scan", "digits"), flat_config(_method("scan")()),
                  without={"pretrain_epochs"})
    assert scan.values == {"epochs": 150, "batch_size": 64} and "pretraining" not in scan.summary()
    assert resolve("digits", "digits", "all", "cpu", cc, "cc") == ("digits", [], None)  # a named preset passes
    assert resolve(None, None, "all", "cpu", cc, "cc") == (None, [], None)  # features, not images
    with pytest.raises(BadInput, match="image_size=0"):
        resolve(None, "digits", "all", "cpu", cc, "cc", image_size=0)
