"""Readers of array-file datasets: scikit-learn's digits, MNIST-style IDX files, the CIFAR pickles,
the STL-10 binaries, and user arrays in .npz / .h5 files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from ccli.data import formats
from ccli.data.readers.common import (
    _maybe_resize,
    _Plan,
    _read_lines,
    _require,
    _require_dir,
    _require_file_path,
    _split_parts,
    _descend,
)
from ccli.errors import BadInput, CcliError

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


# --- digits ----------------------------------------------------------------------------------


def _plan_digits(path, spec, split, image_size):
    # Locate sklearn's bundled file without importing sklearn (slow), so fingerprinting is cheap.
    found = importlib.util.find_spec("sklearn")
    if found is None or not found.submodule_search_locations:
        raise CcliError("the 'digits' dataset needs scikit-learn, which is not installed.")
    data_dir = Path(list(found.submodule_search_locations)[0]) / "datasets" / "data"
    files = [p for p in [data_dir / "digits.csv.gz"] if p.is_file()]

    def read(progress, workers):
        from sklearn.datasets import load_digits

        digits = load_digits()
        # Pixel intensities are 0..16; stretch to the 0..255 every other source uses.
        images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
        labels = digits.target.astype(np.int64)
        return _maybe_resize(images, image_size, workers), labels, [str(i) for i in range(10)]

    return _Plan(data_dir, files, read, 10, image_size)


# --- MNIST / Fashion-MNIST -------------------------------------------------------------------

_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def _find_idx(root: Path, name: str, spec: str) -> Path:
    # Plain first: it needs no decompression. torchvision keeps the files under <Name>/raw.
    for folder in (root, root / "raw", root / "MNIST" / "raw", root / "FashionMNIST" / "raw"):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise BadInput(f"{spec} is missing {name} (or .gz).")


def _plan_idx(class_names):
    def plan(path, spec, split, image_size):
        root = _require_dir(path, spec)
        pairs = [
            (_find_idx(root, images, spec), _find_idx(root, labels, spec))
            for images, labels in (_IDX_FILES[part] for part in _split_parts(split))
        ]

        def read(progress, workers):
            image_parts, label_parts = [], []
            for images_path, labels_path in pairs:
                images = formats.read_idx(images_path, ndim=3)
                labels = formats.read_idx(labels_path, ndim=1).astype(np.int64)
                formats.check_labels(labels, images.shape[0], labels_path, num_classes=10)
                image_parts.append(images)
                label_parts.append(labels)
            images = np.concatenate(image_parts)[..., None] if len(image_parts) > 1 else image_parts[0][..., None]
            return _maybe_resize(images, image_size, workers), np.concatenate(label_parts), list(class_names)

        return _Plan(root, [p for pair in pairs for p in pair], read, 10, image_size)

    return plan


# --- CIFAR-10 / CIFAR-100-20 -----------------------------------------------------------------


def _read_cifar(batches, meta_path, labels_key, names_key, num_classes, default_names, image_size):
    def read(progress, workers):
        parts = [(formats.read_cifar_pickle(p), p) for p in batches]
        image_parts = [formats.cifar_images(batch, p) for batch, p in parts]
        labels = np.concatenate([
            formats.cifar_labels(batch, labels_key, images.shape[0], num_classes, p)
            for (batch, p), images in zip(parts, image_parts)
        ])
        images = np.concatenate(image_parts)  # also makes the transposed views contiguous
        names = default_names
        if meta_path is not None:
            meta = formats.read_cifar_pickle(meta_path)
            names = formats.decode_names(formats.cifar_field(meta, names_key, meta_path), meta_path)
            if len(names) != num_classes:
                raise BadInput(f"{meta_path} lists {len(names)} class names, expected {num_classes}.")
        return _maybe_resize(images, image_size, workers), labels, list(names) if names else None

    return read


def _plan_cifar10(path, spec, split, image_size):
    root = _descend(_require_dir(path, spec), "cifar-10-batches-py")
    names = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
    batches = [_require(root, n, spec) for part in _split_parts(split) for n in names[part]]
    # batches.meta only carries class names, which are fixed; don't refuse the images without it.
    meta = root / "batches.meta" if (root / "batches.meta").is_file() else None
    read = _read_cifar(batches, meta, "labels", "label_names", 10, CIFAR10_CLASSES, image_size)
    return _Plan(root, batches + ([meta] if meta else []), read, 10, image_size)


def _plan_cifar100_20(path, spec, split, image_size):
    root = _descend(_require_dir(path, spec), "cifar-100-python")
    batches = [_require(root, part, spec) for part in _split_parts(split)]
    meta = root / "meta" if (root / "meta").is_file() else None
    read = _read_cifar(batches, meta, "coarse_labels", "coarse_label_names", 20, None, image_size)
    return _Plan(root, batches + ([meta] if meta else []), read, 20, image_size)


# --- STL-10 ----------------------------------------------------------------------------------


def _plan_stl10(path, spec, split, image_size):
    root = _descend(_require_dir(path, spec), "stl10_binary")
    parts = {"all": ["train", "test"], "all+unlabeled": ["train", "test", "unlabeled"]}.get(split, [split])
    sources = []  # (images file, labels file or None: the unlabeled part has no labels)
    for part in parts:
        x = _require(root, f"{part}_X.bin", spec)
        y = None if part == "unlabeled" else _require(root, f"{part}_y.bin", spec)
        sources.append((x, y))
    names_path = root / "class_names.txt" if (root / "class_names.txt").is_file() else None

    def read(progress, workers):
        counts = [formats.stl_image_count(x) for x, _ in sources]
        # One preallocated output filled part by part: all+unlabeled is ~3 GB, so no concatenation.
        images = np.empty((sum(counts), formats.STL_SIDE, formats.STL_SIDE, 3), dtype=np.uint8)
        labels = np.full(sum(counts), -1, dtype=np.int64)
        start = 0
        for (x, y), count in zip(sources, counts):
            formats.read_stl_images_into(x, images[start : start + count])
            if y is not None:
                labels[start : start + count] = formats.read_stl_labels(y, count)
            start += count
        names = None
        if names_path is not None:
            names = _read_lines(names_path)
            if len(names) != 10:
                raise BadInput(f"{names_path} lists {len(names)} class names, expected 10.")
        return _maybe_resize(images, image_size, workers), labels, names

    files = [f for pair in sources for f in pair if f is not None] + ([names_path] if names_path else [])
    return _Plan(root, files, read, 10, image_size)


# --- npz / h5 --------------------------------------------------------------------------------


def _arrays_to_dataset(images, labels, class_names, path, image_size, workers):
    images = formats.coerce_images(np.asarray(images), path)
    if labels is None:
        labels = np.full(images.shape[0], -1, dtype=np.int64)
    else:
        labels = formats.coerce_labels(np.asarray(labels), images.shape[0], path)
    names = None
    if class_names is not None:
        names = [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in np.asarray(class_names).reshape(-1)]
        if labels.size and labels.max() >= len(names):
            raise BadInput(f"{path} has labels up to {labels.max()} but only {len(names)} class_names.")
    return _maybe_resize(images, image_size, workers), labels, names


def _plan_npz(path, spec, split, image_size):
    file = _require_file_path(path, spec)

    def read(progress, workers):
        import zipfile

        try:
            # allow_pickle=False: an npz of object arrays could run code when loaded.
            loaded = np.load(file, allow_pickle=False)
            if isinstance(loaded, np.ndarray):
                # A bare .npy: images when it has the rank of images, else say what it looks like.
                if loaded.ndim in (3, 4):
                    return _arrays_to_dataset(loaded, None, None, file, image_size, workers)
                if loaded.ndim == 2:
                    raise BadInput(f"{file} is a 2-D array {loaded.shape}, which looks like features, not images; "
                                   "give it to --features (or `ccli import` it).")
                raise BadInput(f"{file} is a .npy array of shape {loaded.shape}; images need [N, H, W] or [N, H, W, C].")
            with loaded as archive:
                if "images" not in archive.files:
                    hint = "; features go to --features (or `ccli import`)" if "features" in archive.files else ""
                    raise BadInput(f"{file} has no 'images' array (it has: {', '.join(archive.files) or 'nothing'}){hint}.")
                images = archive["images"]
                labels = archive["labels"] if "labels" in archive.files else None
                names = archive["class_names"] if "class_names" in archive.files else None
        except BadInput:
            raise
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise BadInput(f"{file} is not a readable .npz file ({exc}).") from exc
        return _arrays_to_dataset(images, labels, names, file, image_size, workers)

    return _Plan(file.parent, [file], read, None, image_size)


def _plan_h5(path, spec, split, image_size):
    file = _require_file_path(path, spec)

    def read(progress, workers):
        import h5py

        try:
            with h5py.File(file, "r") as h5:
                def array(name):
                    node = h5.get(name)
                    if node is None:
                        return None
                    if not isinstance(node, h5py.Dataset):
                        raise BadInput(f"{file} has '{name}' as a group, expected a dataset.")
                    return node[()]

                images = array("images")
                if images is None:
                    hint = "; features go to --features (or `ccli import`)" if "features" in h5 else ""
                    raise BadInput(f"{file} has no 'images' dataset (it has: {', '.join(h5.keys()) or 'nothing'}){hint}.")
                labels, names = array("labels"), array("class_names")
        except BadInput:
            raise
        except (OSError, ValueError, KeyError) as exc:
            from ccli.store.reader import _not_hdf5

            what = _not_hdf5(file)
            known = what.startswith(("a NumPy", "a PyTorch", "a zip"))
            detail = f": it is {what.split(',')[0]}" if known else f" ({exc})"
            raise BadInput(f"{file} is not a readable HDF5 file{detail}.") from exc
        return _arrays_to_dataset(images, labels, names, file, image_size, workers)

    return _Plan(file.parent, [file], read, None, image_size)
