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
only inside the functions that need them. The per-format readers live in ccli.data.readers.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

import numpy as np

from ccli.data.image_files import Progress
from ccli.data.readers import PLANNERS
from ccli.data.readers.common import _num_classes, _Plan
from ccli.data.readers.folders import DEFAULT_IMAGENET_SIZE, IMAGENET10_SYNSETS, IMAGENET_DOGS_SYNSETS  # noqa: F401
from ccli.errors import BadInput, CcliError

__all__ = [
    "DATASET_KINDS",
    "DatasetShape",
    "ImageDataset",
    "IMAGENET10_SYNSETS",
    "IMAGENET_DOGS_SYNSETS",
    "load_dataset",
    "parse_spec",
    "probe_dataset",
    "source_fingerprint",
]

# Bump when decoding changes what a given source produces (resampling, channel order…), so that
# artifacts keyed on the old fingerprint are not reused.
FINGERPRINT_VERSION = 1

# Sources whose files total at most this many bytes are fingerprinted by content (stable across
# copies and `touch`); bigger ones by relative name + size + mtime, which costs only a stat per file.
CONTENT_HASH_LIMIT = 32 * 2**20


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



assert PLANNERS.keys() == _KINDS.keys()


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
    plan = PLANNERS[kind](path, normalised, effective_split, image_size)
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
    if plan.decoding is not None:
        # the kind's own decoding version (`folder:` 2: grayscale folders read as 1 channel), so a
        # change there retires that kind's cached artifacts only
        header["decoding"] = plan.decoding
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


# ---------------------------------------------------------------------------------------------
# Probing: the shape a spec would load, cheaply (for the auto preset)

# (side, channels) and images per split of the kinds whose files fix them.
_NATIVE = {
    "digits": (8, 1, {"all": 1797}),
    "mnist": (28, 1, {"train": 60000, "test": 10000}),
    "fashion-mnist": (28, 1, {"train": 60000, "test": 10000}),
    "cifar10": (32, 3, {"train": 50000, "test": 10000}),
    "cifar100-20": (32, 3, {"train": 50000, "test": 10000}),
    "stl10": (96, 3, {"train": 5000, "test": 8000, "unlabeled": 100000}),
}


@dataclass(frozen=True)
class DatasetShape:
    n: int
    height: int
    width: int
    channels: int


def probe_dataset(spec: str, split: str = "all", image_size: int | None = None) -> DatasetShape:
    """N, H, W, C that `load_dataset(spec, split, image_size)` would give, without decoding the images
    (image folders: the file count, the first image's size and every file's mode)."""
    kind, normalised, effective_split, plan = _plan(spec, split, image_size)
    if kind in _NATIVE:
        side, channels, counts = _NATIVE[kind]
        parts = {"all": ["train", "test"], "all+unlabeled": ["train", "test", "unlabeled"]}.get(effective_split,
                                                                                            [effective_split])
        n = counts["all"] if "all" in counts else sum(counts[p] for p in parts)
        side = plan.image_size or side
        return DatasetShape(n, side, side, channels)
    if plan.ids is not None:  # image files: the channels from every file's header
        channels = plan.channels(None) if plan.channels is not None else 3
        if plan.image_size:
            return DatasetShape(len(plan.ids), plan.image_size, plan.image_size, channels)
        from PIL import Image, UnidentifiedImageError

        first = plan.files[0]
        try:
            with Image.open(first) as img:
                width, height = img.size
        except (UnidentifiedImageError, OSError) as exc:
            raise BadInput(f"{first} is not a readable image ({exc}).") from exc
        return DatasetShape(len(plan.ids), height, width, channels)
    images, _, _ = plan.read(None, None)  # npz / h5: the arrays themselves
    n, h, w, c = images.shape
    return DatasetShape(n, h, w, c)
