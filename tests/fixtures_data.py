"""Writers for tiny datasets in each real on-disk format, for tests (call them into tmp_path).

Each writer lays the files out exactly as the official archives do and returns what a correct
reader must give back (uint8 NHWC images, int labels, class names), so tests compare values.
Pixels come from a seeded generator, so every image is distinct and orientation mistakes show.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

STL_SIDE = 96


def random_images(rng: np.random.Generator, n: int, h: int, w: int, c: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, h, w, c), dtype=np.uint8)


# --- IDX (MNIST / Fashion-MNIST) -------------------------------------------------------------


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array: 0x00 0x00 0x08 ndim, big-endian uint32 dims, raw bytes."""
    assert array.dtype == np.uint8
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_idx_dataset(root: Path, n_train: int = 7, n_test: int = 5, gz: bool = True, seed: int = 0) -> dict:
    """MNIST-style folder: train/t10k images (3-d) and labels (1-d), gzipped or plain."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for part, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        for name, array in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
            data = idx_bytes(array)
            if gz:
                (root / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (root / name).write_bytes(data)
        out[part] = (images[..., None], labels.astype(np.int64))
    return out


# --- CIFAR python pickles ----------------------------------------------------------------------


def _cifar_rows(images: np.ndarray) -> np.ndarray:
    """[n, 32, 32, 3] → [n, 3072]: the R plane row-major, then G, then B, as in the official files."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2)).reshape(len(images), 3072)


def _pickle(path: Path, obj: object) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def write_cifar10(root: Path, per_batch: int = 3, n_test: int = 4, seed: int = 1) -> dict:
    """root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    train_images, train_labels = [], []
    for i in range(1, 6):
        images = random_images(rng, per_batch, 32, 32, 3)
        labels = rng.integers(0, 10, size=per_batch).tolist()
        _pickle(folder / f"data_batch_{i}", {b"batch_label": f"training batch {i} of 5".encode(),
                                             b"labels": labels, b"data": _cifar_rows(images),
                                             b"filenames": [b"x.png"] * per_batch})
        train_images.append(images)
        train_labels += labels
    test_images = random_images(rng, n_test, 32, 32, 3)
    test_labels = rng.integers(0, 10, size=n_test).tolist()
    _pickle(folder / "test_batch", {b"labels": test_labels, b"data": _cifar_rows(test_images)})
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    _pickle(folder / "batches.meta", {b"label_names": names, b"num_cases_per_batch": per_batch})
    return {
        "folder": folder,
        "train": (np.concatenate(train_images), np.array(train_labels)),
        "test": (test_images, np.array(test_labels)),
        "class_names": [n.decode() for n in names],
    }


CIFAR100_COARSE = [
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes", "large_omnivores_and_herbivores",
    "medium_mammals", "non-insect_invertebrates", "people", "reptiles", "small_mammals", "trees",
    "vehicles_1", "vehicles_2",
]


def write_cifar100(root: Path, n_train: int = 6, n_test: int = 4, seed: int = 2) -> dict:
    """root/cifar-100-python/{train, test, meta} with fine and coarse labels."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    out = {"folder": folder, "class_names": CIFAR100_COARSE}
    for part, n in (("train", n_train), ("test", n_test)):
        images = random_images(rng, n, 32, 32, 3)
        coarse = rng.integers(0, 20, size=n).tolist()
        fine = rng.integers(0, 100, size=n).tolist()
        _pickle(folder / part, {b"filenames": [b"x.png"] * n, b"batch_label": part.encode(),
                                b"fine_labels": fine, b"coarse_labels": coarse, b"data": _cifar_rows(images)})
        out[part] = (images, np.array(coarse))
    _pickle(folder / "meta", {b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
                              b"coarse_label_names": [n.encode() for n in CIFAR100_COARSE]})
    return out


# --- STL-10 binaries -------------------------------------------------------------------------


def stl_bytes(images: np.ndarray) -> bytes:
    """[n, 96, 96, 3] → the STL layout: per image, channel planes each stored column-major."""
    return np.ascontiguousarray(images.transpose(0, 3, 2, 1)).tobytes()


def write_stl10(root: Path, n_train: int = 3, n_test: int = 2, n_unlabeled: int = 4, seed: int = 3) -> dict:
    """root/stl10_binary/{train,test,unlabeled}_X.bin, {train,test}_y.bin (labels 1..10), class_names.txt."""
    rng = np.random.default_rng(seed)
    folder = root / "stl10_binary"
    folder.mkdir(parents=True, exist_ok=True)
    out = {"folder": folder}
    for part, n in (("train", n_train), ("test", n_test), ("unlabeled", n_unlabeled)):
        # Dark noise plus one bright marker at [row 0, col 5] of channel 0 of the first image: if
        # rows and columns were swapped on reading, it would show up at [row 5, col 0] instead.
        images = rng.integers(0, 100, size=(n, STL_SIDE, STL_SIDE, 3), dtype=np.uint8)
        images[0, 0, 5, 0] = 255
        (folder / f"{part}_X.bin").write_bytes(stl_bytes(images))
        labels = None
        if part != "unlabeled":
            labels = rng.integers(0, 10, size=n)
            (folder / f"{part}_y.bin").write_bytes((labels + 1).astype(np.uint8).tobytes())
        out[part] = (images, labels)
    names = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    (folder / "class_names.txt").write_text("\n".join(names) + "\n")
    out["class_names"] = names
    return out


# --- image folders ---------------------------------------------------------------------------


def solid_image(path: Path, size: tuple[int, int], colour: tuple[int, int, int], mode: str = "RGB") -> None:
    """A one-colour image (JPEG keeps a flat colour almost exactly, so values stay checkable)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, colour)
    if mode != "RGB":
        image = image.convert(mode)
    image.save(path)


def save_array(path: Path, pixels: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def colour_for(label: int, index: int) -> tuple[int, int, int]:
    """A distinct, JPEG-friendly colour per (class, image)."""
    return (40 + 20 * label, (30 + 40 * index) % 250, 200 - 15 * label)


def write_imagenet_train(root: Path, synsets, per_class: int = 2, extra_synsets=("n01440764",)) -> dict:
    """An ILSVRC-style train folder: root/<synset>/<synset>_<i>.JPEG, images of varying sizes.

    Mixes JPEG and PNG and landscape/portrait shapes; `extra_synsets` are distractor folders that
    a subset loader must ignore.
    """
    sizes = [(120, 90), (80, 130), (100, 100)]
    expected_colours = []
    for label, synset in enumerate(list(synsets) + list(extra_synsets)):
        for i in range(per_class):
            ext = ".JPEG" if i % 2 == 0 else ".png"
            colour = colour_for(label % 10, i)
            solid_image(root / synset / f"{synset}_{i}{ext}", sizes[(label + i) % len(sizes)], colour)
            if label < len(synsets):
                expected_colours.append(colour)
    labels = np.repeat(np.arange(len(synsets)), per_class)
    return {"labels": labels, "colours": np.array(expected_colours, dtype=np.int64)}


def write_tiny_imagenet(root: Path, wnids=("n09999999", "n01443537", "n02085620"),
                        train_per_class: int = 2, n_val: int = 4) -> dict:
    """root/tiny-imagenet-200 with wnids.txt (unsorted, as shipped), words.txt, train/, val/."""
    folder = root / "tiny-imagenet-200"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "wnids.txt").write_text("\n".join(wnids) + "\n")
    words = {"n09999999": "zebra crossing, crosswalk", "n01443537": "goldfish, Carassius auratus",
             "n02085620": "Chihuahua", "n00000001": "unused"}
    (folder / "words.txt").write_text("".join(f"{w}\t{n}\n" for w, n in words.items()))
    order = sorted(wnids)  # class index = position in sorted wnids
    train_labels, train_colours = [], []
    for wnid in order:
        label = order.index(wnid)
        for i in range(train_per_class):
            colour = colour_for(label, i)
            # One grayscale JPEG per class, as the real set has: must come back as RGB.
            mode = "L" if i == 1 else "RGB"
            solid_image(folder / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", (64, 64), colour, mode)
            (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
            train_labels.append(label)
            train_colours.append(colour if mode == "RGB" else (_gray(colour),) * 3)
    val_labels, val_colours, lines = [], [], []
    for i in range(n_val):
        wnid = wnids[i % len(wnids)]
        label = order.index(wnid)
        colour = colour_for(label, i + 3)
        solid_image(folder / "val" / "images" / f"val_{i}.JPEG", (64, 64), colour)
        lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63")
        val_labels.append(label)
        val_colours.append(colour)
    (folder / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return {
        "folder": folder,
        "class_names": [words[w].split(",")[0] for w in order],
        "train": (np.array(train_labels), np.array(train_colours)),
        "test": (np.array(val_labels), np.array(val_colours)),
    }


def _gray(colour) -> int:
    # PIL's "L" conversion: ITU-R 601-2 luma.
    r, g, b = colour
    return int(round((r * 299 + g * 587 + b * 114) / 1000))


def write_class_folders(root: Path, classes=("cat", "ant", "bee"), per_class: int = 2, size=(12, 10), seed: int = 4) -> dict:
    """root/<class>/img<i>.png with exact random pixels (PNG is lossless)."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for label, name in enumerate(sorted(classes)):
        for i in range(per_class):
            pixels = random_images(rng, 1, size[1], size[0], 3)[0]
            save_array(root / name / f"img{i}.png", pixels)
            images.append(pixels)
            labels.append(label)
    return {"images": np.stack(images), "labels": np.array(labels), "class_names": sorted(classes)}


def write_flat_folder(root: Path, n: int = 5, size=(9, 7), seed: int = 5) -> np.ndarray:
    """root/img<i>.png (sorted names) plus a non-image file that must be ignored."""
    rng = np.random.default_rng(seed)
    images = random_images(rng, n, size[1], size[0], 3)
    for i, pixels in enumerate(images):
        save_array(root / f"img{i:02d}.png", pixels)
    (root / "README.txt").write_text("not an image")
    return images


# --- arrays ----------------------------------------------------------------------------------


def write_npz(path: Path, n: int = 6, shape=(8, 8), channels: int | None = None, labels: bool = True,
              as_float: bool = False, seed: int = 6) -> dict:
    rng = np.random.default_rng(seed)
    full = (n, *shape) if channels is None else (n, *shape, channels)
    images = rng.integers(0, 256, size=full, dtype=np.uint8)
    arrays = {"images": images.astype(np.float32) / 255.0 if as_float else images}
    lab = rng.integers(0, 3, size=n) if labels else None
    if labels:
        arrays["labels"] = lab
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    expected = images if channels is not None else images[..., None]
    return {"images": expected, "labels": lab}


def write_h5(path: Path, n: int = 5, shape=(6, 7, 3), labels: bool = True, seed: int = 7) -> dict:
    import h5py

    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    lab = rng.integers(0, 4, size=n) if labels else None
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=images)
        if labels:
            f.create_dataset("labels", data=lab)
    return {"images": images, "labels": lab}
