"""What every reader shares: the plan a reader returns, and the checks on files and folders.

A reader is `plan(path, spec, split, image_size) -> Plan`: it checks that every file is there and
lists them (enough for the source fingerprint), and its `read(progress, workers)` decodes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ccli.data.image_files import Progress, resize_images
from ccli.errors import BadInput


_Loaded = tuple[np.ndarray, np.ndarray, "list[str] | None"]


@dataclass
class _Plan:
    root: Path  # fingerprint names files relative to it, so a moved dataset keeps its identity
    files: list[Path]  # every file the read will open
    read: Callable[[Progress | None, int | None], _Loaded]
    num_classes: int | None
    image_size: int | None = None  # the effective target size (a kind's default applied)
    ids: list[str] | None = None  # per-sample ids (relative file paths) when the source has them
    # image files only: the channel count a read will give, from the files' headers (for probing)
    channels: Callable[[int | None], int] | None = None
    decoding: int | None = None  # a version of how the files are decoded, in the fingerprint when set


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


def _read_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read {path} as UTF-8 text ({exc}).") from exc
    return [line.strip() for line in text.splitlines() if line.strip()]



def _num_classes(labels: np.ndarray, class_names: list[str] | None) -> int | None:
    if class_names is not None:
        return len(class_names)
    known = labels[labels >= 0]
    return int(np.unique(known).size) if known.size else None
