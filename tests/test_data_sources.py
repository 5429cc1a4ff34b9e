"""Dataset sources: every spec kind read back from tiny fixtures in its real on-disk format."""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fixtures_data as fx
from ccli.data import sources
from ccli.data.sources import (
    DATASET_KINDS,
    IMAGENET10_SYNSETS,
    IMAGENET_DOGS_SYNSETS,
    ImageDataset,
    load_dataset,
    parse_spec,
    source_fingerprint,
)
from ccli.errors import BadInput

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def assert_well_formed(ds: ImageDataset) -> None:
    """The contract every source honours, whatever its format."""
    assert ds.images.dtype == np.uint8 and ds.images.ndim == 4 and ds.images.shape[-1] in (1, 3)
    assert ds.images.flags.c_contiguous and ds.images.flags.writeable
    assert ds.labels.dtype == np.int64 and ds.labels.shape == (len(ds),)
    assert isinstance(ds.fingerprint, str) and len(ds.fingerprint) == 32


def bad_input(match: str):
    return pytest.raises(BadInput, match=match)


# --- spec grammar ----------------------------------------------------------------------------


def test_dataset_kinds_lists_every_kind_in_order():
    assert list(DATASET_KINDS) == [
        "digits", "mnist", "fashion-mnist", "cifar10", "cifar100-20", "stl10",
        "imagenet10", "imagenet-dogs", "tiny-imagenet", "folder", "npz", "h5",
    ]
    assert all(isinstance(d, str) and d for d in DATASET_KINDS.values())


def test_parse_spec_normalises_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert parse_spec("digits") == ("digits", None)
    assert parse_spec("cifar10:data/c10") == ("cifar10", str(tmp_path / "data" / "c10"))
    assert parse_spec("NPZ:/a/b:c.npz") == ("npz", "/a/b:c.npz")  # only the first colon splits
    monkeypatch.setenv("HOME", str(tmp_path))
    assert parse_spec("folder:~/imgs") == ("folder", str(tmp_path / "imgs"))


@pytest.mark.parametrize(
    "spec, message",
    [
        ("cifar11:/x", r"unknown dataset kind 'cifar11'.*digits, mnist, fashion-mnist, cifar10"),
        ("", r"empty dataset spec"),
        ("cifar10", r"'cifar10' needs a path"),
        ("npz:", r"'npz:' needs a path"),
        ("digits:foo", r"'digits:foo' takes no path"),
    ],
)
def test_parse_spec_rejects_bad_specs(spec, message):
    with bad_input(message):
        parse_spec(spec)
    with bad_input(message):
        load_dataset(spec)


def test_missing_path_and_wrong_path_type(tmp_path):
    with bad_input(rf"cifar10:{tmp_path}/nope points to {tmp_path}/nope, which does not exist"):
        load_dataset(f"cifar10:{tmp_path}/nope")
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"x")
    with bad_input(r"must point to a folder.*extract the archive first"):
        load_dataset(f"cifar10:{tmp_path}/cifar-10-python.tar.gz")
    with bad_input(r"must point to a file"):
        load_dataset(f"npz:{tmp_path}")


# --- digits ----------------------------------------------------------------------------------


def test_digits_matches_sklearn():
    from sklearn.datasets import load_digits

    ref = load_digits()
    ds = load_dataset("digits")
    assert_well_formed(ds)
    assert ds.images.shape == (1797, 8, 8, 1)
    np.testing.assert_array_equal(ds.images[..., 0], np.rint(ref.images * 255 / 16).astype(np.uint8))
    assert ds.images.max() == 255 and ds.images.min() == 0
    np.testing.assert_array_equal(ds.labels, ref.target)
    assert ds.num_classes == 10 and ds.class_names == [str(i) for i in range(10)]
    assert ds.spec == "digits" and ds.split == "all"


def test_digits_has_only_all_split():
    with bad_input(r"^digits has no train/test split; use split 'all' \(got 'train'\)"):
        load_dataset("digits", split="train")


# --- MNIST / Fashion-MNIST (IDX) -------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_idx_splits_and_values(tmp_path, gz):
    expected = fx.write_idx_dataset(tmp_path, gz=gz)
    train = load_dataset(f"fashion-mnist:{tmp_path}", split="train")
    test = load_dataset(f"mnist:{tmp_path}", split="test")
    both = load_dataset(f"fashion-mnist:{tmp_path}")
    for ds in (train, test, both):
        assert_well_formed(ds)
    np.testing.assert_array_equal(train.images, expected["train"][0])
    np.testing.assert_array_equal(train.labels, expected["train"][1])
    np.testing.assert_array_equal(test.images, expected["test"][0])
    np.testing.assert_array_equal(both.images, np.concatenate([expected["train"][0], expected["test"][0]]))
    np.testing.assert_array_equal(both.labels, np.concatenate([expected["train"][1], expected["test"][1]]))
    assert both.images.shape == (12, 28, 28, 1) and both.num_classes == 10
    assert both.class_names[0] == "T-shirt/top" and test.class_names == [str(i) for i in range(10)]


def test_idx_missing_file_named(tmp_path):
    fx.write_idx_dataset(tmp_path)
    (tmp_path / "train-images-idx3-ubyte.gz").unlink()
    with bad_input(rf"^fashion-mnist:{tmp_path} is missing train-images-idx3-ubyte \(or \.gz\)\.$"):
        load_dataset(f"fashion-mnist:{tmp_path}")
    # The test split does not need the train files.
    assert len(load_dataset(f"fashion-mnist:{tmp_path}", split="test")) == 5


def test_idx_bad_magic_named(tmp_path):
    fx.write_idx_dataset(tmp_path, gz=False)
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes(b"\x00\x00\x07\x01" + path.read_bytes()[4:])  # 0x07 is no IDX dtype
    with bad_input(rf"{path} is not an IDX file \(bad magic number\)"):
        load_dataset(f"mnist:{tmp_path}", split="test")


def test_idx_truncated_named(tmp_path):
    fx.write_idx_dataset(tmp_path, gz=True)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-100]))
    with bad_input(rf"{path} is truncated or corrupt"):
        load_dataset(f"mnist:{tmp_path}")


def test_idx_corrupt_gzip_named(tmp_path):
    fx.write_idx_dataset(tmp_path, gz=True)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(b"this is not gzip")
    with bad_input(rf"{path} is not a valid gzip file"):
        load_dataset(f"mnist:{tmp_path}", split="test")


def test_idx_label_count_mismatch_named(tmp_path):
    fx.write_idx_dataset(tmp_path, gz=False)
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes(fx.idx_bytes(np.zeros(4, np.uint8)))  # 4 labels for 5 images
    with bad_input(rf"{path} has 4 labels for 5 images"):
        load_dataset(f"mnist:{tmp_path}", split="test")


@pytest.mark.skipif(not FASHION_MNIST.is_dir(), reason="Fashion-MNIST not installed here")
def test_real_fashion_mnist():
    ds = load_dataset(f"fashion-mnist:{FASHION_MNIST}")
    assert_well_formed(ds)
    assert ds.images.shape == (70000, 28, 28, 1)
    assert np.array_equal(np.unique(ds.labels), np.arange(10))
    assert np.bincount(ds.labels).tolist() == [7000] * 10
    assert 60 < ds.images.mean() < 90  # mostly-black clothing images, not noise or garbage
    train = load_dataset(f"fashion-mnist:{FASHION_MNIST}", split="train")
    assert train.images.shape == (60000, 28, 28, 1)
    np.testing.assert_array_equal(train.images, ds.images[:60000])


# --- CIFAR ----------------------------------------------------------------------------------


def test_cifar10_values_splits_and_folder_forms(tmp_path):
    expected = fx.write_cifar10(tmp_path)
    parent = load_dataset(f"cifar10:{tmp_path}")
    inner = load_dataset(f"cifar10:{expected['folder']}")
    assert_well_formed(parent)
    train_x, train_y = expected["train"]
    test_x, test_y = expected["test"]
    np.testing.assert_array_equal(parent.images, np.concatenate([train_x, test_x]))
    np.testing.assert_array_equal(parent.labels, np.concatenate([train_y, test_y]))
    np.testing.assert_array_equal(inner.images, parent.images)
    assert parent.images.shape == (19, 32, 32, 3)
    assert parent.class_names == expected["class_names"] and parent.num_classes == 10
    # Spot-check the plane layout: pixel (row 3, col 7) green is byte 1024 + 3*32 + 7 of the row.
    with open(expected["folder"] / "data_batch_1", "rb") as f:
        row = pickle.load(f)[b"data"][0]
    assert parent.images[0, 3, 7, 1] == row[1024 + 3 * 32 + 7]
    assert len(load_dataset(f"cifar10:{tmp_path}", split="train")) == 15
    test = load_dataset(f"cifar10:{tmp_path}", split="test")
    np.testing.assert_array_equal(test.images, test_x)
    assert parent.spec == f"cifar10:{tmp_path}" and test.split == "test"


def test_cifar10_missing_batch_named(tmp_path):
    expected = fx.write_cifar10(tmp_path)
    (expected["folder"] / "data_batch_3").unlink()
    with bad_input(rf"^cifar10:{tmp_path} is missing data_batch_3\.$"):
        load_dataset(f"cifar10:{tmp_path}")


def test_cifar10_without_meta_uses_standard_names(tmp_path):
    expected = fx.write_cifar10(tmp_path)
    (expected["folder"] / "batches.meta").unlink()
    assert load_dataset(f"cifar10:{tmp_path}", split="test").class_names == expected["class_names"]


def test_cifar_corrupt_pickle_named(tmp_path):
    expected = fx.write_cifar10(tmp_path)
    path = expected["folder"] / "test_batch"
    path.write_bytes(path.read_bytes()[:200])
    with bad_input(rf"{path} is corrupt or not a CIFAR python pickle"):
        load_dataset(f"cifar10:{tmp_path}", split="test")


def test_cifar_pickle_cannot_run_code(tmp_path):
    expected = fx.write_cifar10(tmp_path)
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = expected["folder"] / "test_batch"
    path.write_bytes(pickle.dumps({b"data": Exploit()}))
    with bad_input(rf"{path} is corrupt or not a CIFAR python pickle"):
        load_dataset(f"cifar10:{tmp_path}", split="test")
    assert not marker.exists()


def test_cifar_label_count_mismatch_named(tmp_path):
    expected = fx.write_cifar10(tmp_path)
    path = expected["folder"] / "data_batch_2"
    with open(path, "rb") as f:
        batch = pickle.load(f)
    batch[b"labels"] = batch[b"labels"][:-1]
    path.write_bytes(pickle.dumps(batch, protocol=2))  # protocol 2: bytes via _codecs.encode
    with bad_input(rf"{path} has 2 labels for 3 images"):
        load_dataset(f"cifar10:{tmp_path}", split="train")


def test_cifar100_uses_coarse_labels(tmp_path):
    expected = fx.write_cifar100(tmp_path)
    ds = load_dataset(f"cifar100-20:{tmp_path}")
    assert_well_formed(ds)
    np.testing.assert_array_equal(ds.images, np.concatenate([expected["train"][0], expected["test"][0]]))
    np.testing.assert_array_equal(ds.labels, np.concatenate([expected["train"][1], expected["test"][1]]))
    assert ds.num_classes == 20 and ds.class_names == fx.CIFAR100_COARSE
    test = load_dataset(f"cifar100-20:{expected['folder']}", split="test")
    np.testing.assert_array_equal(test.labels, expected["test"][1])
    (expected["folder"] / "train").unlink()
    with bad_input(rf"cifar100-20:{tmp_path} is missing train\."):
        load_dataset(f"cifar100-20:{tmp_path}", split="train")


# --- STL-10 ---------------------------------------------------------------------------------


def test_stl10_orientation_splits_and_labels(tmp_path):
    expected = fx.write_stl10(tmp_path)
    # The fixture writer itself follows the documented layout: channel 0, column 5, row 0.
    raw = (expected["folder"] / "train_X.bin").read_bytes()
    assert raw[5 * 96 + 0] == 255 and raw[0 * 96 + 5] != 255
    train = load_dataset(f"stl10:{tmp_path}", split="train")
    assert_well_formed(train)
    assert train.images[0, 0, 5, 0] == 255 and train.images[0, 5, 0, 0] != 255
    np.testing.assert_array_equal(train.images, expected["train"][0])
    np.testing.assert_array_equal(train.labels, expected["train"][1])
    assert train.labels.min() >= 0 and train.labels.max() <= 9
    assert train.class_names[7] == "monkey" and train.num_classes == 10

    sizes = {s: len(load_dataset(f"stl10:{expected['folder']}", split=s))
             for s in ("train", "test", "unlabeled", "all", "all+unlabeled")}
    assert sizes == {"train": 3, "test": 2, "unlabeled": 4, "all": 5, "all+unlabeled": 9}
    everything = load_dataset(f"stl10:{tmp_path}", split="all+unlabeled")
    np.testing.assert_array_equal(everything.labels[5:], [-1] * 4)
    np.testing.assert_array_equal(everything.labels[:5], np.concatenate([expected["train"][1], expected["test"][1]]))
    np.testing.assert_array_equal(everything.images[5:], expected["unlabeled"][0])
    assert np.all(load_dataset(f"stl10:{tmp_path}", split="unlabeled").labels == -1)


def test_stl10_wrong_byte_count_named(tmp_path):
    expected = fx.write_stl10(tmp_path)
    path = expected["folder"] / "test_X.bin"
    path.write_bytes(path.read_bytes()[:-10])
    with bad_input(rf"{path} has \d+ bytes, not a whole number of 96×96×3 images"):
        load_dataset(f"stl10:{tmp_path}", split="test")


def test_stl10_label_count_and_range_named(tmp_path):
    expected = fx.write_stl10(tmp_path)
    path = expected["folder"] / "train_y.bin"
    path.write_bytes(b"\x01\x02")
    with bad_input(rf"{path} has 2 labels for 3 images"):
        load_dataset(f"stl10:{tmp_path}", split="train")
    path.write_bytes(b"\x01\x02\x0b")  # 11 is no STL class
    with bad_input(rf"{path} has labels outside 1\.\.10"):
        load_dataset(f"stl10:{tmp_path}", split="train")


def test_stl10_missing_file_and_bad_split(tmp_path):
    expected = fx.write_stl10(tmp_path)
    (expected["folder"] / "unlabeled_X.bin").unlink()
    with bad_input(rf"^stl10:{tmp_path} is missing unlabeled_X\.bin\.$"):
        load_dataset(f"stl10:{tmp_path}", split="all+unlabeled")
    with bad_input(rf"stl10:{tmp_path} has no split 'val'; choose one of train, test, unlabeled, all, all\+unlabeled"):
        load_dataset(f"stl10:{tmp_path}", split="val")


# --- ImageNet subsets -----------------------------------------------------------------------


def test_imagenet10_synsets_order_and_resize(tmp_path):
    expected = fx.write_imagenet_train(tmp_path, IMAGENET10_SYNSETS)
    ds = load_dataset(f"imagenet10:{tmp_path}")
    assert_well_formed(ds)
    assert ds.images.shape == (20, 96, 96, 3)  # the default size; distractor synset left out
    np.testing.assert_array_equal(ds.labels, expected["labels"])
    assert ds.class_names[0] == "king penguin" and ds.class_names[-1] == "orange" and ds.num_classes == 10
    # Solid colours survive resizing and JPEG, up to JPEG's rounding.
    mean_colours = ds.images.reshape(20, -1, 3).mean(axis=1)
    np.testing.assert_allclose(mean_colours, expected["colours"], atol=3)
    small = load_dataset(f"imagenet10:{tmp_path}", split="train", image_size=32)
    assert small.images.shape == (20, 32, 32, 3)
    # train and all are the same images, so they share a fingerprint; test does not exist.
    assert ds.fingerprint == load_dataset(f"imagenet10:{tmp_path}", split="train").fingerprint
    assert ds.fingerprint != small.fingerprint
    with bad_input(rf"imagenet10:{tmp_path} has no split 'test'; choose one of train, all"):
        load_dataset(f"imagenet10:{tmp_path}", split="test")


def test_imagenet_dogs_and_missing_synset(tmp_path):
    expected = fx.write_imagenet_train(tmp_path / "train", IMAGENET_DOGS_SYNSETS, per_class=1)
    ds = load_dataset(f"imagenet-dogs:{tmp_path}", image_size=16)  # the ILSVRC root, holding train/
    np.testing.assert_array_equal(ds.labels, expected["labels"])
    assert ds.num_classes == 15 and ds.class_names[5] == "golden retriever"
    shutil.rmtree(tmp_path / "train" / "n02110958")
    with bad_input(r"imagenet-dogs:.* is missing synset folder n02110958\.$"):
        load_dataset(f"imagenet-dogs:{tmp_path / 'train'}")
    with bad_input(r"is missing synset folders n02056570, n02128757, n02690373 \(and 6 more\)"):
        load_dataset(f"imagenet10:{tmp_path / 'train'}")


# --- Tiny-ImageNet --------------------------------------------------------------------------


def test_tiny_imagenet_layout(tmp_path):
    expected = fx.write_tiny_imagenet(tmp_path)
    train = load_dataset(f"tiny-imagenet:{tmp_path}", split="train")
    test = load_dataset(f"tiny-imagenet:{expected['folder']}", split="test")
    both = load_dataset(f"tiny-imagenet:{tmp_path}")
    assert_well_formed(both)
    assert train.images.shape == (6, 64, 64, 3) and test.images.shape == (4, 64, 64, 3)
    assert len(both) == 10 and both.num_classes == 3
    assert train.class_names == expected["class_names"] == ["goldfish", "Chihuahua", "zebra crossing"]
    np.testing.assert_array_equal(train.labels, expected["train"][0])
    np.testing.assert_array_equal(test.labels, expected["test"][0])
    np.testing.assert_array_equal(both.labels, np.concatenate([expected["train"][0], expected["test"][0]]))
    # Grayscale JPEGs come back as 3 equal channels of the right gray.
    np.testing.assert_allclose(train.images.reshape(6, -1, 3).mean(axis=1), expected["train"][1], atol=3)
    np.testing.assert_allclose(test.images.reshape(4, -1, 3).mean(axis=1), expected["test"][1], atol=3)


def test_tiny_imagenet_missing_files_named(tmp_path):
    expected = fx.write_tiny_imagenet(tmp_path)
    (expected["folder"] / "val" / "images" / "val_2.JPEG").unlink()
    with bad_input(r"is missing val/images/val_2\.JPEG \(listed in val_annotations\.txt\)"):
        load_dataset(f"tiny-imagenet:{tmp_path}", split="test")
    assert len(load_dataset(f"tiny-imagenet:{tmp_path}", split="train")) == 6
    (expected["folder"] / "wnids.txt").unlink()
    with bad_input(rf"^tiny-imagenet:{tmp_path} is missing wnids\.txt\.$"):
        load_dataset(f"tiny-imagenet:{tmp_path}")


# --- folder: --------------------------------------------------------------------------------


def test_class_folders_exact_pixels(tmp_path):
    expected = fx.write_class_folders(tmp_path)
    ds = load_dataset(f"folder:{tmp_path}")
    assert_well_formed(ds)
    assert ds.images.shape == (6, 10, 12, 3)  # native (non-square) size: all images agree
    np.testing.assert_array_equal(ds.images, expected["images"])
    np.testing.assert_array_equal(ds.labels, [0, 0, 1, 1, 2, 2])
    assert ds.class_names == ["ant", "bee", "cat"] and ds.num_classes == 3
    with bad_input(rf"folder:{tmp_path} has no train/test split"):
        load_dataset(f"folder:{tmp_path}", split="test")


def test_flat_folder_is_unlabeled(tmp_path):
    images = fx.write_flat_folder(tmp_path)
    ds = load_dataset(f"folder:{tmp_path}")
    np.testing.assert_array_equal(ds.images, images)
    assert np.all(ds.labels == -1) and ds.class_names is None and ds.num_classes is None


def test_folder_resizes_shorter_side_then_centre_crops(tmp_path):
    # 60×20: red | green | blue bands; the centred 20×20 square lies wholly in the green band.
    pixels = np.zeros((20, 60, 3), np.uint8)
    pixels[:, :10] = (255, 0, 0)
    pixels[:, 10:50] = (0, 255, 0)
    pixels[:, 50:] = (0, 0, 255)
    fx.save_array(tmp_path / "wide.png", pixels)
    fx.save_array(tmp_path / "tall.png", pixels.transpose(1, 0, 2).copy())
    with bad_input(r"has images of different sizes .* pass --image-size"):
        load_dataset(f"folder:{tmp_path}")
    ds = load_dataset(f"folder:{tmp_path}", image_size=8)
    assert ds.images.shape == (2, 8, 8, 3)
    assert np.all(ds.images == np.array([0, 255, 0], np.uint8))


def test_folder_bad_layouts(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with bad_input(rf"folder:{empty} contains no images"):
        load_dataset(f"folder:{empty}")
    mixed = tmp_path / "mixed"
    fx.write_class_folders(mixed, classes=("a",), per_class=1)
    fx.save_array(mixed / "loose.png", np.zeros((10, 12, 3), np.uint8))
    with bad_input(r"has both class subfolders and loose images \(e\.g\. loose\.png\)"):
        load_dataset(f"folder:{mixed}")
    broken = tmp_path / "broken"
    fx.write_flat_folder(broken, n=2)
    (broken / "img01.png").write_bytes(b"not a png")
    with bad_input(rf"{broken}/img01\.png is not a readable image"):
        load_dataset(f"folder:{broken}", image_size=4)


def _write_gray_folder(root: Path) -> dict:
    """Grayscale PNGs in every one-intensity form PIL writes: 8-bit L, 1-bit, 16-bit, gray + alpha, a
    palette of grays. Returns file name → the 8-bit gray each must read back as."""
    from PIL import Image

    rng = np.random.default_rng(11)
    root.mkdir(parents=True, exist_ok=True)
    expected = {}
    gray = rng.integers(0, 256, (6, 5), dtype=np.uint8)
    Image.fromarray(gray).save(root / "a_l.png")
    expected["a_l.png"] = gray
    bits = rng.integers(0, 2, (6, 5)).astype(bool)
    Image.fromarray(bits).save(root / "b_bilevel.png")  # mode "1": black 0, white 255
    expected["b_bilevel.png"] = np.where(bits, 255, 0).astype(np.uint8)
    # 16-bit: 0, 257·k and 65535 come back as 0, k, 255 (PIL's own conversion would clip to 255)
    deep = (gray.astype(np.uint16) * 257)
    Image.fromarray(deep).save(root / "c_16bit.png")
    expected["c_16bit.png"] = gray
    with_alpha = Image.merge("LA", [Image.fromarray(gray), Image.fromarray(np.full((6, 5), 7, np.uint8))])
    with_alpha.save(root / "d_alpha.png")  # the alpha is dropped, as RGBA's is
    expected["d_alpha.png"] = gray
    palette = Image.fromarray(gray).convert("P")  # PNG palette of grays
    palette.save(root / "e_palette.png")
    expected["e_palette.png"] = gray
    return expected


def test_grayscale_folder_keeps_one_channel(tmp_path):
    from PIL import Image

    expected = _write_gray_folder(tmp_path / "gray")
    modes = {name: Image.open(tmp_path / "gray" / name).mode for name in expected}
    assert modes == {"a_l.png": "L", "b_bilevel.png": "1", "c_16bit.png": "I;16", "d_alpha.png": "LA",
                     "e_palette.png": "P"}
    ds = load_dataset(f"folder:{tmp_path / 'gray'}")
    assert_well_formed(ds)
    assert ds.images.shape == (5, 6, 5, 1)
    assert ds.sample_ids() == sorted(expected)
    for i, name in enumerate(sorted(expected)):
        np.testing.assert_array_equal(ds.images[i, :, :, 0], expected[name], err_msg=name)
    # the auto preset's probe reads the same channel count from the headers alone
    assert sources.probe_dataset(f"folder:{tmp_path / 'gray'}") == sources.DatasetShape(5, 6, 5, 1)
    resized = load_dataset(f"folder:{tmp_path / 'gray'}", image_size=3)
    assert resized.images.shape == (5, 3, 3, 1)


def test_mixed_folder_reads_rgb_and_says_so(tmp_path, capsys, monkeypatch):
    from ccli import log

    monkeypatch.setattr(log, "_verbosity", 1)  # an earlier test's -q would silence the note
    expected = _write_gray_folder(tmp_path / "mixed" / "gray")
    colour = np.random.default_rng(12).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    fx.save_array(tmp_path / "mixed" / "rgb" / "z.png", colour)
    ds = load_dataset(f"folder:{tmp_path / 'mixed'}")
    assert ds.images.shape == (6, 6, 5, 3) and ds.class_names == ["gray", "rgb"]
    for i, name in enumerate(sorted(expected)):  # gray files: R = G = B = their gray
        np.testing.assert_array_equal(ds.images[i], np.repeat(expected[name][..., None], 3, axis=2), err_msg=name)
    np.testing.assert_array_equal(ds.images[5], colour)
    err = capsys.readouterr().err
    assert (f"folder:{tmp_path / 'mixed'}: 5 of 6 images are grayscale and the others colour (e.g. z.png), "
            "so every image is read as RGB (3 channels)") in " ".join(err.split())
    assert sources.probe_dataset(f"folder:{tmp_path / 'mixed'}").channels == 3


def test_folder_fingerprint_carries_the_decoding_version(tmp_path, monkeypatch):
    import ccli.data.readers.folders as folders

    _write_gray_folder(tmp_path / "gray")
    now = source_fingerprint(f"folder:{tmp_path / 'gray'}")
    digits = source_fingerprint("digits")
    monkeypatch.setattr(folders, "FOLDER_DECODING", 1)
    assert source_fingerprint(f"folder:{tmp_path / 'gray'}") != now  # an older decoding is another source
    assert source_fingerprint("digits") == digits  # other kinds keep their identity (and caches)


def test_data_info_names_the_channels(cli, tmp_path):
    import json

    _write_gray_folder(tmp_path / "gray")
    shown = cli("data", "info", f"folder:{tmp_path / 'gray'}")
    assert shown.code == 0
    assert "5 images of 6×5, 1 channel (grayscale), 0 classes, 0 labelled" in " ".join(shown.err.split())
    summary = json.loads(cli("data", "info", f"folder:{tmp_path / 'gray'}", "--json").out)
    assert summary["channels"] == 1 and summary["colour"] == "grayscale" and summary["image_shape"] == [6, 5, 1]


# --- npz / h5 -------------------------------------------------------------------------------


def test_npz_gray_rgb_float_and_unlabeled(tmp_path):
    gray = fx.write_npz(tmp_path / "gray.npz")
    ds = load_dataset(f"npz:{tmp_path / 'gray.npz'}")
    assert_well_formed(ds)
    assert ds.images.shape == (6, 8, 8, 1)
    np.testing.assert_array_equal(ds.images, gray["images"])
    np.testing.assert_array_equal(ds.labels, gray["labels"])
    assert ds.num_classes == len(np.unique(gray["labels"])) and ds.class_names is None

    rgb_float = fx.write_npz(tmp_path / "f.npz", channels=3, as_float=True, labels=False)
    ds = load_dataset(f"npz:{tmp_path / 'f.npz'}")
    np.testing.assert_array_equal(ds.images, rgb_float["images"])  # k/255 floats come back as k
    assert np.all(ds.labels == -1) and ds.num_classes is None

    resized = load_dataset(f"npz:{tmp_path / 'f.npz'}", image_size=4)
    assert resized.images.shape == (6, 4, 4, 3)


def test_npz_bad_inputs_named(tmp_path):
    path = tmp_path / "a.npz"
    np.savez(path, pixels=np.zeros((2, 4, 4), np.uint8))
    with bad_input(rf"{path} has no 'images' array \(it has: pixels\)"):
        load_dataset(f"npz:{path}")
    np.savez(path, images=np.zeros((3, 4, 4), np.uint8), labels=np.zeros(2, np.int64))
    with bad_input(rf"{path} has 2 labels for 3 images"):
        load_dataset(f"npz:{path}")
    np.savez(path, images=np.zeros((3, 3, 8, 8), np.uint8))
    with bad_input(r"looks channels-first"):
        load_dataset(f"npz:{path}")
    np.savez(path, images=np.full((2, 4, 4), 2.0))
    with bad_input(rf"{path} has float 'images' outside \[0, 1\]"):
        load_dataset(f"npz:{path}")
    path.write_bytes(b"garbage")
    with bad_input(rf"{path} is not a readable \.npz file"):
        load_dataset(f"npz:{path}")
    with bad_input(rf"npz:{path} has no train/test split"):
        load_dataset(f"npz:{path}", split="train")


def test_h5_read_back_and_bad_inputs(tmp_path):
    import h5py

    expected = fx.write_h5(tmp_path / "d.h5")
    ds = load_dataset(f"h5:{tmp_path / 'd.h5'}")
    assert_well_formed(ds)
    np.testing.assert_array_equal(ds.images, expected["images"])
    np.testing.assert_array_equal(ds.labels, expected["labels"])
    fx.write_h5(tmp_path / "u.h5", labels=False)
    assert np.all(load_dataset(f"h5:{tmp_path / 'u.h5'}").labels == -1)

    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.create_dataset("features", data=np.zeros((2, 3)))
    with bad_input(rf"{tmp_path}/x\.h5 has no 'images' dataset \(it has: features\)"):
        load_dataset(f"h5:{tmp_path / 'x.h5'}")
    (tmp_path / "bad.h5").write_bytes(b"not hdf5 at all")
    with bad_input(rf"{tmp_path}/bad\.h5 is not a readable HDF5 file"):
        load_dataset(f"h5:{tmp_path / 'bad.h5'}")


# --- fingerprints ---------------------------------------------------------------------------


def test_fingerprint_is_stable_and_content_based(tmp_path):
    expected = fx.write_cifar10(tmp_path / "a")
    spec = f"cifar10:{tmp_path / 'a'}"
    fp = load_dataset(spec).fingerprint
    assert fp == load_dataset(spec).fingerprint == source_fingerprint(spec)
    assert fp != source_fingerprint(spec, split="train")
    assert fp != source_fingerprint(spec, image_size=16)
    # Small sources are hashed by content: a copy elsewhere is the same source…
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    assert source_fingerprint(f"cifar10:{tmp_path / 'b'}") == fp
    # …and changing one byte of one file is a different one.
    path = expected["folder"] / "test_batch"
    with open(path, "rb") as f:
        batch = pickle.load(f)
    batch[b"data"][0, 0] ^= 1
    fx._pickle(path, batch)
    assert source_fingerprint(spec) != fp


def test_fingerprint_of_large_sources_uses_stat(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "CONTENT_HASH_LIMIT", 0)
    fx.write_idx_dataset(tmp_path)
    spec = f"mnist:{tmp_path}"
    fp = source_fingerprint(spec)
    assert fp == load_dataset(spec).fingerprint
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert source_fingerprint(spec) != fp


def test_importing_sources_stays_light():
    code = "import sys, ccli.data.sources; print(sorted(m for m in ('torch', 'PIL', 'sklearn', 'h5py') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"
