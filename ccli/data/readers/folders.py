"""Readers of image-file datasets: the ImageNet subsets, Tiny-ImageNet and `folder:` (one
subfolder per class, or flat). Each sample's id is its path relative to the dataset folder."""

from __future__ import annotations

import os
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

import numpy as np

from ccli.data.image_files import FOLDER_DECODING, folder_channels, is_image_file, list_images, read_image_files
from ccli.data.readers.common import _descend, _Plan, _read_lines, _require, _require_dir, _resolve_image_size, _split_parts
from ccli.errors import BadInput

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


def _images_plan(root, files, labels, class_names, num_classes, size, spec, gray_if_all=False):
    """gray_if_all (`folder:`): 1 channel when every file is grayscale, else RGB; the photo datasets
    are RGB whatever their files (ImageNet holds a few grayscale JPEGs)."""
    labels = np.asarray(labels, dtype=np.int64)

    def channels(workers, announce=False):
        return folder_channels(files, spec, workers, announce) if gray_if_all else 3

    def read(progress, workers):
        return (read_image_files(files, size, spec, progress, workers, channels(workers, announce=True)), labels,
                class_names)

    ids = [Path(f).relative_to(root).as_posix() if Path(f).is_relative_to(root) else Path(f).name for f in files]
    return _Plan(root, list(files), read, num_classes, size, ids, channels,
                 FOLDER_DECODING if gray_if_all else None)


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
        return _images_plan(root, files, [-1] * len(files), None, None, image_size, spec, gray_if_all=True)
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
    return _images_plan(root, files, labels, class_dirs, len(class_dirs), image_size, spec, gray_if_all=True)
