"""Dataset sources: one spec string (`kind[:PATH]`) → uint8 images in memory.

    ds = load_dataset("cifar10:/data/cifar-10-batches-py", split="all")
    ds.images   # uint8 [N, H, W, C], C = 1 or 3        ds.labels  # int64 [N], -1 = unknown

Loading happens in two steps. A *plan* checks the spec, the split and that every expected file is
there, and lists the files it will read; reading them comes second. The plan alone is enough for
`source_fingerprint`, so a command can compute its cache key (and get a cache hit) without
decoding a single image.

Every problem with the user's input (unknown kind, missing or corrupt file, wrong split) is a
`BadInput` with one sentence naming the spec or file; no raw KeyError/OSError/pickle error escapes.
This module must not import torch (`ccli eval` imports it); PIL, sklearn and h5py are imported
only inside the functions that need them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Callable, Mapping

import numpy as np

from ccli.data import formats
from ccli.data.image_files import Progress, is_image_file, list_images, read_image_files, resize_images
from ccli.errors import BadInput, CcliError

__all__ = [
    "DATASET_KINDS",
    "ImageDataset",
    "IMAGENET10_SYNSETS",
    "IMAGENET_DOGS_SYNSETS",
    "load_dataset",
    "parse_spec",
    "source_fingerprint",
]

# Bump when decoding changes what a given source produces (resampling, channel order…), so that
# artifacts keyed on the old fingerprint are not reused.
FINGERPRINT_VERSION = 1

# Sources whose files total at most this many bytes are fingerprinted by content (stable across
# copies and `touch`); bigger ones by relative name + size + mtime, which costs only a stat per file.
CONTENT_HASH_LIMIT = 32 * 2**20

DEFAULT_IMAGENET_SIZE = 96

# ImageNet-10 / ImageNet-Dogs as defined by the DAC/DCCM/CC papers: the synsets and their order
# fix the class indices 0..K-1.
IMAGENET10_SYNSETS: Mapping[str, str] = MappingProxyType({
    "n02056570": "king penguin",
    "n02085936": "Maltese dog",
    "n02128757": "snow leopard",
    "n02690373": "airliner",
    "n02692877": "airship",
    "n03095699": "container ship",
    "n04254680": "soccer ball",
    "n04285008": "sports car",
    "n04467665": "trailer truck",
    "n07747607": "orange",
})
IMAGENET_DOGS_SYNSETS: Mapping[str, str] = MappingProxyType({
    "n02085936": "Maltese dog",
    "n02086646": "Blenheim spaniel",
    "n02088238": "basset",
    "n02091467": "Norwegian elkhound",
    "n02097130": "giant schnauzer",
    "n02099601": "golden retriever",
    "n02101388": "Brittany spaniel",
    "n02101556": "clumber",
    "n02102177": "Welsh springer spaniel",
    "n02105056": "groenendael",
    "n02105412": "kelpie",
    "n02105855": "Shetland sheepdog",
    "n02107142": "Doberman",
    "n02110958": "pug",
    "n02112137": "chow",
})

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """A whole dataset split in memory, as uint8 NHWC images with int64 labels (-1 = unknown)."""

    images: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    class_names: list[str] | None
    spec: str
    split: str
    num_classes: int | None
    fingerprint: str
    # Per-sample ids: file paths relative to the dataset folder for image folders, else None
    # (the row index is the id). Exported beside each prediction.
    ids: list[str] | None = field(default=None, repr=False)

    def sample_ids(self) -> list[str]:
        return list(self.ids) if self.ids is not None else [str(i) for i in range(len(self))]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def has_labels(self) -> bool:
        return bool((self.labels >= 0).any())

    def __repr__(self) -> str:
        n, h, w, c = self.images.shape
        return f"ImageDataset({self.spec!r}, split={self.split!r}, {n}×{h}×{w}×{c}, num_classes={self.num_classes})"


# ---------------------------------------------------------------------------------------------
# Spec parsing


@dataclass(frozen=True)
class _Kind:
    description: str
    needs_path: bool
    splits: tuple[str, ...]
    # The split whose images `all` equals when the dataset has only one (ImageNet subsets): the
    # fingerprint uses it so `all` and `train` share cached artifacts.
    same_as_all: str | None = None


_TRAIN_TEST = ("train", "test", "all")
_ALL_ONLY = ("all",)

_KINDS: dict[str, _Kind] = {
    "digits": _Kind("scikit-learn's bundled 8×8 digits (1,797 images, no download)", False, _ALL_ONLY),
    "mnist": _Kind("MNIST IDX files (plain or .gz) in DIR", True, _TRAIN_TEST),
    "fashion-mnist": _Kind("Fashion-MNIST IDX files (plain or .gz) in DIR", True, _TRAIN_TEST),
    "cifar10": _Kind("CIFAR-10 python pickles (cifar-10-batches-py or its parent)", True, _TRAIN_TEST),
    "cifar100-20": _Kind("CIFAR-100 python pickles, 20 superclasses (cifar-100-python or its parent)", True, _TRAIN_TEST),
    "stl10": _Kind("STL-10 binaries (stl10_binary or its parent); extra splits unlabeled, all+unlabeled", True,
                   ("train", "test", "unlabeled", "all", "all+unlabeled")),
    "imagenet10": _Kind("ImageNet-10: 10 synset folders of an ILSVRC-2012 train folder", True, ("train", "all"), "train"),
    "imagenet-dogs": _Kind("ImageNet-Dogs: 15 synset folders of an ILSVRC-2012 train folder", True, ("train", "all"), "train"),
    "tiny-imagenet": _Kind("Tiny-ImageNet (tiny-imagenet-200 or its parent); test = val", True, _TRAIN_TEST),
    "folder": _Kind("a folder of images: one subfolder per class, or flat (unlabeled)", True, _ALL_ONLY),
    "npz": _Kind("a .npz file with arrays 'images' and optional 'labels'", True, _ALL_ONLY),
    "h5": _Kind("an HDF5 file with datasets 'images' and optional 'labels'", True, _ALL_ONLY),
}

DATASET_KINDS: Mapping[str, str] = MappingProxyType({k: v.description for k, v in _KINDS.items()})


def _kinds_list() -> str:
    return ", ".join(_KINDS)


def parse_spec(spec: str) -> tuple[str, str | None]:
    """'kind[:PATH]' → (kind, absolute path or None); checks the kind and whether it takes a path."""
    if not isinstance(spec, str) or not spec.strip():
        raise BadInput(f"empty dataset spec; expected KIND[:PATH] with KIND one of {_kinds_list()}.")
    kind, sep, path = spec.strip().partition(":")
    kind = kind.strip().lower()
    if kind not in _KINDS:
        raise BadInput(f"unknown dataset kind '{kind}' in spec '{spec}'; valid kinds are {_kinds_list()}.")
    if _KINDS[kind].needs_path:
        if not path:
            raise BadInput(f"dataset spec '{spec}' needs a path: write {kind}:PATH.")
        return kind, os.path.abspath(os.path.expanduser(path))
    if sep:
        raise BadInput(f"dataset spec '{spec}' takes no path; write just '{kind}'.")
    return kind, None


def _normalised_spec(kind: str, path: str | None) -> str:
    return kind if path is None else f"{kind}:{path}"


# ---------------------------------------------------------------------------------------------
# Plans: what a (spec, split, image_size) will read, checked before anything is decoded.

_Loaded = tuple[np.ndarray, np.ndarray, "list[str] | None"]


@dataclass
class _Plan:
    root: Path  # fingerprint names files relative to it, so a moved dataset keeps its identity
    files: list[Path]  # every file the read will open
    read: Callable[[Progress | None, int | None], _Loaded]
    num_classes: int | None
    image_size: int | None = None  # the effective target size (a kind's default applied)
    ids: list[str] | None = None  # per-sample ids (relative file paths) when the source has them


def _require_dir(path: str, spec: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise BadInput(f"{spec} points to {p}, which does not exist.")
    if not p.is_dir():
        hint = "; extract the archive first" if p.name.endswith((".tar", ".gz", ".tgz", ".zip")) else ""
        raise BadInput(f"{spec} must point to a folder, but {p} is a file{hint}.")
    return p


def _require_file_path(path: str, spec: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise BadInput(f"{spec} points to {p}, which does not exist.")
    if not p.is_file():
        raise BadInput(f"{spec} must point to a file, but {p} is a folder.")
    return p


def _descend(root: Path, subfolder: str) -> Path:
    """Accept both the dataset's own folder and the folder it was extracted into."""
    inner = root / subfolder
    return inner if inner.is_dir() else root


def _require(root: Path, name: str, spec: str) -> Path:
    p = root / name
    if not p.is_file():
        raise BadInput(f"{spec} is missing {name}.")
    return p


def _resolve_image_size(image_size: int | None, default: int | None) -> int | None:
    return default if image_size is None else image_size


def _maybe_resize(images: np.ndarray, image_size: int | None, workers: int | None) -> np.ndarray:
    return images if image_size is None else resize_images(images, image_size, workers)


def _split_parts(split: str) -> list[str]:
    """'all' means train+test, as the clustering papers evaluate."""
    return ["train", "test"] if split == "all" else [split]


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


def _read_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read {path} as UTF-8 text ({exc}).") from exc
    return [line.strip() for line in text.splitlines() if line.strip()]


# --- image folders: ImageNet subsets, Tiny-ImageNet, folder: ---------------------------------


def _images_plan(root, files, labels, class_names, num_classes, size, spec):
    labels = np.asarray(labels, dtype=np.int64)

    def read(progress, workers):
        return read_image_files(files, size, spec, progress, workers), labels, class_names

    ids = [Path(f).relative_to(root).as_posix() if Path(f).is_relative_to(root) else Path(f).name for f in files]
    return _Plan(root, list(files), read, num_classes, size, ids)


def _plan_imagenet_subset(synsets: Mapping[str, str]):
    def plan(path, spec, split, image_size):
        root = _require_dir(path, spec)
        # Also accept the ILSVRC root that holds train/ next to val/.
        if not any((root / s).is_dir() for s in synsets) and (root / "train").is_dir():
            root = root / "train"
        missing = [s for s in synsets if not (root / s).is_dir()]
        if missing:
            more = f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""
            noun = "folder" if len(missing) == 1 else "folders"
            raise BadInput(f"{spec} is missing synset {noun} {', '.join(missing[:3])}{more}.")
        files, labels = [], []
        for index, synset in enumerate(synsets):
            found = list_images(root / synset, recursive=True)
            if not found:
                raise BadInput(f"{spec} has no images in synset folder {synset}.")
            files += found
            labels += [index] * len(found)
        size = _resolve_image_size(image_size, DEFAULT_IMAGENET_SIZE)
        return _images_plan(root, files, labels, list(synsets.values()), len(synsets), size, spec)

    return plan


def _plan_tiny_imagenet(path, spec, split, image_size):
    root = _descend(_require_dir(path, spec), "tiny-imagenet-200")
    wnids_path = _require(root, "wnids.txt", spec)
    # Sorted, as torchvision's ImageFolder over train/ orders them (wnids.txt itself is unsorted).
    wnids = sorted(set(_read_lines(wnids_path)))
    if not wnids:
        raise BadInput(f"{wnids_path} lists no classes.")
    index = {w: i for i, w in enumerate(wnids)}
    words_path = root / "words.txt"
    words = _read_words(words_path) if words_path.is_file() else {}
    class_names = [words.get(w, w) for w in wnids]

    files, labels = [], []
    meta = [wnids_path] + ([words_path] if words_path.is_file() else [])
    for part in _split_parts(split):
        if part == "train":
            for wnid in wnids:
                folder = root / "train" / wnid / "images"
                if not folder.is_dir():
                    raise BadInput(f"{spec} is missing train/{wnid}/images.")
                found = list_images(folder, recursive=False)
                files += found
                labels += [index[wnid]] * len(found)
        else:
            annotations = _require(root, "val/val_annotations.txt", spec)
            meta.append(annotations)
            val_dir = root / "val" / "images"
            present = {p.name for p in list_images(val_dir, recursive=False)} if val_dir.is_dir() else set()
            for lineno, line in enumerate(_read_lines(annotations), start=1):
                fields = line.split("\t")
                if len(fields) < 2 or fields[1] not in index:
                    raise BadInput(f"{annotations} line {lineno} does not name an image and a wnid from wnids.txt.")
                if fields[0] not in present:
                    raise BadInput(f"{spec} is missing val/images/{fields[0]} (listed in val_annotations.txt).")
                files.append(val_dir / fields[0])
                labels.append(index[fields[1]])
    plan = _images_plan(root, files, labels, class_names, len(wnids), _resolve_image_size(image_size, 64), spec)
    plan.files += meta
    return plan


def _read_words(path: Path) -> dict[str, str]:
    """words.txt: 'wnid<TAB>synonym, synonym, …' → wnid → first synonym (short enough for plots)."""
    words = {}
    for line in _read_lines(path):
        wnid, _, names = line.partition("\t")
        if names:
            words[wnid.strip()] = names.split(",")[0].strip()
    return words


def _plan_folder(path, spec, split, image_size):
    root = _require_dir(path, spec)
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
        class_dirs = [e.name for e in entries if e.is_dir() and not e.name.startswith(".")]
        loose = [e.name for e in entries if e.is_file() and is_image_file(e.name)]
    except OSError as exc:
        raise BadInput(f"cannot list {root}: {exc.strerror or exc}.") from exc
    if not class_dirs:
        # Flat folder: an unlabeled image collection.
        files = list_images(root, recursive=False)
        if not files:
            raise BadInput(f"{spec} contains no images.")
        return _images_plan(root, files, [-1] * len(files), None, None, image_size, spec)
    if loose:
        # Mixing both layouts is ambiguous: silently ignoring the loose images would drop data.
        raise BadInput(
            f"{spec} has both class subfolders and loose images (e.g. {loose[0]}); "
            f"put every image in a class subfolder, or use a flat folder."
        )
    files, labels = [], []
    for index, name in enumerate(class_dirs):
        found = list_images(root / name, recursive=True)
        if not found:
            raise BadInput(f"{spec} has a class folder '{name}' with no images.")
        files += found
        labels += [index] * len(found)
    return _images_plan(root, files, labels, class_dirs, len(class_dirs), image_size, spec)


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


def _num_classes(labels: np.ndarray, class_names: list[str] | None) -> int | None:
    if class_names is not None:
        return len(class_names)
    known = labels[labels >= 0]
    return int(np.unique(known).size) if known.size else None


def _plan_npz(path, spec, split, image_size):
    file = _require_file_path(path, spec)

    def read(progress, workers):
        import zipfile

        try:
            # allow_pickle=False: an npz of object arrays could run code when loaded.
            with np.load(file, allow_pickle=False) as archive:
                if not hasattr(archive, "files"):
                    raise BadInput(f"{file} is a .npy array, not an .npz archive with an 'images' array.")
                if "images" not in archive.files:
                    raise BadInput(f"{file} has no 'images' array (it has: {', '.join(archive.files) or 'nothing'}).")
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
                    raise BadInput(f"{file} has no 'images' dataset (it has: {', '.join(h5.keys()) or 'nothing'}).")
                labels, names = array("labels"), array("class_names")
        except BadInput:
            raise
        except (OSError, ValueError, KeyError) as exc:
            raise BadInput(f"{file} is not a readable HDF5 file ({exc}).") from exc
        return _arrays_to_dataset(images, labels, names, file, image_size, workers)

    return _Plan(file.parent, [file], read, None, image_size)


_PLANNERS = {
    "digits": _plan_digits,
    "mnist": _plan_idx([str(i) for i in range(10)]),
    "fashion-mnist": _plan_idx(FASHION_MNIST_CLASSES),
    "cifar10": _plan_cifar10,
    "cifar100-20": _plan_cifar100_20,
    "stl10": _plan_stl10,
    "imagenet10": _plan_imagenet_subset(IMAGENET10_SYNSETS),
    "imagenet-dogs": _plan_imagenet_subset(IMAGENET_DOGS_SYNSETS),
    "tiny-imagenet": _plan_tiny_imagenet,
    "folder": _plan_folder,
    "npz": _plan_npz,
    "h5": _plan_h5,
}
assert _PLANNERS.keys() == _KINDS.keys()


def _plan(spec: str, split: str, image_size: int | None) -> tuple[str, str, str, _Plan]:
    """(kind, normalised spec, effective split, plan); the effective split names what is read."""
    kind, path = parse_spec(spec)
    normalised = _normalised_spec(kind, path)
    info = _KINDS[kind]
    if split not in info.splits:
        if info.splits == _ALL_ONLY:
            raise BadInput(f"{normalised} has no train/test split; use split 'all' (got '{split}').")
        raise BadInput(f"{normalised} has no split '{split}'; choose one of {', '.join(info.splits)}.")
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 1):
        raise BadInput(f"image size must be a positive integer, got {image_size!r}.")
    image_size = None if image_size is None else int(image_size)
    # ImageNet subsets have only a train split; `all` reads the same images.
    effective_split = info.same_as_all if split == "all" and info.same_as_all else split
    plan = _PLANNERS[kind](path, normalised, effective_split, image_size)
    return kind, normalised, effective_split, plan


# ---------------------------------------------------------------------------------------------
# Fingerprints


def _fingerprint(kind: str, split: str, plan: _Plan) -> str:
    """Content identity of the source: what would be read, not where it lives."""
    try:
        stats = [(f, f.stat()) for f in plan.files]
    except OSError as exc:
        raise BadInput(f"cannot read {exc.filename}: {exc.strerror or exc}.") from exc
    total = sum(s.st_size for _, s in stats)
    by_content = total <= CONTENT_HASH_LIMIT
    digest = hashlib.blake2b(digest_size=16)
    header = {"v": FINGERPRINT_VERSION, "kind": kind, "split": split, "image_size": plan.image_size,
              "by": "content" if by_content else "stat"}
    digest.update(json.dumps(header, sort_keys=True).encode())
    for f, s in stats:
        name = f.relative_to(plan.root).as_posix() if f.is_relative_to(plan.root) else f.name
        if by_content:
            digest.update(f"\0{name}\0{s.st_size}\0".encode())
            try:
                with open(f, "rb") as handle:
                    for block in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(block)
            except OSError as exc:
                raise BadInput(f"cannot read {f}: {exc.strerror or exc}.") from exc
        else:
            digest.update(f"\0{name}\0{s.st_size}\0{s.st_mtime_ns}".encode())
    return digest.hexdigest()


def source_fingerprint(spec: str, split: str = "all", image_size: int | None = None) -> str:
    """The fingerprint `load_dataset` would give, from file listings and stats alone (no decoding)."""
    kind, _, effective_split, plan = _plan(spec, split, image_size)
    return _fingerprint(kind, effective_split, plan)


# ---------------------------------------------------------------------------------------------
# Loading


def load_dataset(
    spec: str,
    split: str = "all",
    image_size: int | None = None,
    *,
    progress: Progress | None = None,
    workers: int | None = None,
) -> ImageDataset:
    """Load a dataset spec into memory.

    split: train | test | all (train+test, the papers' protocol); stl10 adds unlabeled and
        all+unlabeled; digits/folder/npz/h5 have only all.
    image_size: resize to image_size×image_size (shorter side, then centre crop). None keeps the
        native size (96 for ImageNet subsets, whose photos have no common size).
    progress: called as progress(done, total) while image files are decoded.
    workers: threads for image decoding/resizing (default: up to 16).
    """
    kind, normalised, effective_split, plan = _plan(spec, split, image_size)
    fingerprint = _fingerprint(kind, effective_split, plan)
    images, labels, class_names = plan.read(progress, workers)
    # One contiguous, writable array: torch.from_numpy warns on read-only buffers, and later
    # stages index it in place.
    if not (images.flags.c_contiguous and images.flags.writeable):
        images = np.array(images, dtype=np.uint8, order="C", copy=True)
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or labels.shape != (images.shape[0],):
        raise CcliError(f"internal error: {normalised} produced images {images.shape} and labels {labels.shape}.")
    num_classes = plan.num_classes if plan.num_classes is not None else _num_classes(labels, class_names)
    return ImageDataset(
        images=images,
        labels=labels,
        class_names=list(class_names) if class_names is not None else None,
        spec=normalised,
        split=split,
        num_classes=num_classes,
        fingerprint=fingerprint,
        ids=list(plan.ids) if plan.ids is not None and len(plan.ids) == len(labels) else None,
    )
