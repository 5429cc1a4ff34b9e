"""Sample ids and class names inside features and predictions artifacts.

`ids [N]` holds each sample's id as fixed-length UTF-8 bytes (a file path relative to the
folder for `folder:` datasets, the row index otherwise), so a prediction can be traced back to
its file with h5py or pandas alone. Class names are the root attribute `class_names` (a JSON
list, label i is class_names[i]). Both are optional: readers fall back to the `index` dataset
and to no names.
"""

from __future__ import annotations

import json
from typing import Sequence

import numpy as np

IDS = "ids"
CLASS_NAMES = "class_names"


def encode_ids(ids: Sequence[str]) -> np.ndarray:
    """Fixed-length UTF-8 bytes: deterministic bytes for the checksum, readable by any HDF5 tool."""
    encoded = [str(i).encode("utf-8") for i in ids]
    width = max((len(e) for e in encoded), default=1) or 1
    return np.array(encoded, dtype=f"S{width}")


def decode_ids(values: np.ndarray) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, (bytes, np.bytes_)) else str(v) for v in np.asarray(values).reshape(-1)]


def write_sample_ids(writer, ids: Sequence[str] | None, class_names: Sequence[str] | None) -> None:
    """Store ids (when known) and class names (when known) in an artifact being written."""
    if ids is not None:
        writer.write(IDS, encode_ids(ids))
    if class_names is not None:
        writer.attrs[CLASS_NAMES] = json.dumps([str(n) for n in class_names])


def read_ids(art) -> list[str]:
    """Each row's id: the stored `ids`, else the `index` values as strings."""
    if IDS in art:
        return decode_ids(art.read(IDS))
    return [str(int(i)) for i in art.read("index")]


def read_class_names(art) -> list[str] | None:
    text = art.attr(CLASS_NAMES)
    if not text:
        return None
    try:
        names = json.loads(text)
    except (TypeError, json.JSONDecodeError):
        return None
    return [str(n) for n in names] if isinstance(names, list) else None
