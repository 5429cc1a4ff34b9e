"""`ccli import`: features from another tool (.npy, .npz, plain .h5, .csv) → a features artifact.

The artifact's key is a content hash of what was imported (the file's bytes and the labels,
ids and class names given beside it), so importing the same file twice is a cache hit and two
different files never share a key, nor anything computed from them downstream. Rows are copied
in blocks (a memory-mapped .npy, h5py slices, CSV lines), so N is bounded by the disk, not RAM.

Commands that take a features artifact call `ensure_features`, which imports a plain array
file on the fly (into the cache) and passes a real artifact through untouched.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from ccli.errors import BadInput

ARRAY_SUFFIXES = (".npy", ".npz")
TEXT_SUFFIXES = (".csv", ".tsv", ".txt")
HDF5_SUFFIXES = (".h5", ".hdf5")
IMPORTABLE = ARRAY_SUFFIXES + TEXT_SUFFIXES + HDF5_SUFFIXES
IMPORT_VERSION = 1
_BLOCK_BYTES = 32 * 2**20


@dataclass
class _Source:
    """An opened features source: its shape and dtype, a block reader, and what it carries."""

    n: int
    d: int
    dtype: np.dtype
    blocks: Callable[[], Iterator[np.ndarray]]
    labels: np.ndarray | None = None  # int64 or strings
    ids: list[str] | None = None
    class_names: list[str] | None = None
    close: Callable[[], None] = lambda: None


def _label(path: Path, option: str) -> str:
    return f"{option} {path}".strip()


def _check_matrix(shape, dtype, label: str, what: str = "array") -> tuple[int, int]:
    dtype = np.dtype(dtype)
    if dtype.kind not in "fiub":
        raise BadInput(f"{label} holds a {dtype} {what}; features must be numbers (float or integer).")
    if len(shape) == 1:
        raise BadInput(f"{label} is a 1-D {what} of {shape[0]:,} values; features must be 2-D [N, D] "
                       "(a label vector goes to --labels).")
    if len(shape) != 2:
        raise BadInput(f"{label} has shape {tuple(shape)}; features must be a 2-D [N, D] {what}.")
    n, d = int(shape[0]), int(shape[1])
    if n < 1 or d < 1:
        raise BadInput(f"{label} has shape {tuple(shape)}; it needs at least one row and one column.")
    return n, d


def _row_blocks(array, n: int, d: int, itemsize: int) -> Callable[[], Iterator[np.ndarray]]:
    step = max(1, _BLOCK_BYTES // max(1, d * itemsize))

    def blocks():
        for start in range(0, n, step):
            yield np.asarray(array[start : start + step])

    return blocks


def _open_npy(path: Path, label: str) -> _Source:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise BadInput(f"{label} is a .npy file of Python objects, which ccli does not load (save a numeric array).") from exc
    except (OSError, EOFError) as exc:
        raise BadInput(f"{label} is not a readable .npy file ({exc}).") from exc
    n, d = _check_matrix(array.shape, array.dtype, label)
    return _Source(n, d, array.dtype, _row_blocks(array, n, d, array.dtype.itemsize))


def _open_npz(path: Path, label: str) -> _Source:
    import zipfile

    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise BadInput(f"{label} is not a readable .npz file ({exc}).") from exc
    if not hasattr(archive, "files"):
        return _open_npy(path, label)
    with archive:
        names = list(archive.files)
        if "features" in names:
            key = "features"
        else:
            matrices = [n for n in names if n not in ("labels", "ids", "class_names", "index")]
            if len(matrices) != 1:
                raise BadInput(f"{label} holds arrays {', '.join(names) or 'none'}; name the features array "
                               "'features' (optional 'labels', 'ids', 'class_names').")
            key = matrices[0]
        try:
            features = archive[key]
            labels = archive["labels"] if "labels" in names else None
            ids = archive["ids"] if "ids" in names else None
            class_names = archive["class_names"] if "class_names" in names else None
        except ValueError as exc:
            raise BadInput(f"{label} holds Python objects in an array, which ccli does not load ({exc}).") from exc
    n, d = _check_matrix(features.shape, features.dtype, f"{label} (array '{key}')")
    return _Source(n, d, features.dtype, _row_blocks(features, n, d, features.dtype.itemsize), labels,
                   _strings(ids), _strings(class_names))


def _strings(values) -> list[str] | None:
    if values is None:
        return None
    from ccli.store.sample_ids import decode_ids

    return decode_ids(np.asarray(values))


def _open_h5(path: Path, label: str) -> _Source:
    import h5py

    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise BadInput(f"{label} is not a readable HDF5 file (truncated or corrupt).") from exc
    try:
        node = h5.get("features")
        if not isinstance(node, h5py.Dataset):
            raise BadInput(f"{label} has no 'features' dataset (it has: {', '.join(h5.keys()) or 'nothing'}).")
        n, d = _check_matrix(node.shape, node.dtype, f"{label} (dataset 'features')", "dataset")

        def small(name):
            value = h5.get(name)
            return value[()] if isinstance(value, h5py.Dataset) else None

        names = small("class_names")
        if names is None and "class_names" in h5.attrs:
            import json

            try:
                names = json.loads(h5.attrs["class_names"])
            except (TypeError, ValueError):
                names = None
        return _Source(n, d, node.dtype, _row_blocks(node, n, d, node.dtype.itemsize), small("labels"),
                       _strings(small("ids")), _strings(names), h5.close)
    except BaseException:
        h5.close()
        raise


def _open_text(path: Path, label: str) -> _Source:
    """Rows of numbers; an optional header line; an optional first column of ids (non-numeric)."""
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ("," if path.suffix.lower() == ".csv" else None)

    def split(line: str) -> list[str]:
        return [c.strip() for c in (line.split(delimiter) if delimiter else line.split())]

    def numeric(cells) -> bool:
        try:
            [float(c) for c in cells]
            return True
        except ValueError:
            return False

    n, header, first, id_column = 0, False, None, False
    first_cells: list[str] = []  # the ids, when the first column turns out to hold them
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                cells = split(line)
                if first is None:
                    first = cells
                    if not numeric(cells) and not numeric(cells[1:]):
                        header = True  # e.g. "id,f0,f1" or "f0,f1"
                        continue
                    id_column = not numeric(cells[:1])
                elif n == 0 and header:
                    first = cells
                    id_column = not numeric(cells[:1])
                first_cells.append(cells[0])
                n += 1
    except UnicodeDecodeError as exc:
        raise BadInput(f"{label} is not a UTF-8 text file of numbers ({exc.reason}).") from exc
    if n == 0 or first is None:
        raise BadInput(f"{label} has no rows of numbers.")
    width = len(first) - (1 if id_column else 0)
    if width < 1:
        raise BadInput(f"{label} has no feature columns.")
    def blocks():
        rows: list[list[float]] = []
        skip = header
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                if skip:
                    skip = False
                    continue
                cells = split(line)
                if id_column:
                    cells = cells[1:]
                if len(cells) != width:
                    raise BadInput(f"{label} line {lineno} has {len(cells)} feature values, expected {width}.")
                try:
                    rows.append([float(c) for c in cells])
                except ValueError as exc:
                    raise BadInput(f"{label} line {lineno} has a value that is not a number ({exc}).") from exc
                if len(rows) * width >= _BLOCK_BYTES // 8:
                    yield np.asarray(rows, dtype=np.float64)
                    rows = []
        if rows:
            yield np.asarray(rows, dtype=np.float64)

    return _Source(n, width, np.dtype(np.float64), blocks, ids=first_cells if id_column else None)


def open_source(path: Path, option: str = "") -> _Source:
    label = _label(path, option)
    if not path.exists():
        raise BadInput(f"{label} does not exist.")
    if path.is_dir():
        raise BadInput(f"{label} is a directory; give a .npy, .npz, .h5 or .csv file of features.")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _open_npy(path, label)
    if suffix == ".npz":
        return _open_npz(path, label)
    if suffix in HDF5_SUFFIXES:
        return _open_h5(path, label)
    if suffix in TEXT_SUFFIXES:
        return _open_text(path, label)
    raise BadInput(f"{label} has extension '{path.suffix}'; ccli imports .npy, .npz, .h5 or .csv/.tsv features.")


def _file_digest(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _array_digest(values) -> str | None:
    if values is None:
        return None
    digest = hashlib.blake2b(digest_size=16)
    for v in (values if isinstance(values, list) else np.asarray(values).reshape(-1).tolist()):
        digest.update(str(v).encode() + b"\0")
    return digest.hexdigest()


def import_features(
    path: str | os.PathLike,
    *,
    labels: str | os.PathLike | None = None,
    names: Sequence[str] | None = None,
    ids: str | os.PathLike | None = None,
    dtype: str = "float32",
    out: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    force: bool = False,
    option: str = "",
) -> tuple[Path, bool]:
    """Write `path`'s features as a features artifact; returns (artifact path, cache hit).

    labels: a label file (.npy/.txt/.csv, integers or class names; an id,label CSV is joined by
        id) — overrides labels stored in the file. names: class names for integer labels (label i
        is names[i]). ids: a text file of one id per line (e.g. the image file names).
    """
    from ccli.metrics.inputs import align_labels, read_label_table, read_lines
    from ccli.store import ArtifactWriter, cache_root, content_key, get_or_compute, output_path
    from ccli.store.sample_ids import write_sample_ids

    path = Path(path).expanduser()
    if dtype not in ("float32", "float16"):
        raise BadInput(f"dtype {dtype} is not float32 or float16.")
    source = open_source(path, option)
    try:
        id_list = source.ids
        if ids is not None:
            id_list = read_lines(Path(ids), "--ids")
            if len(id_list) != source.n:
                raise BadInput(f"--ids {ids} lists {len(id_list):,} ids but {_label(path, option)} has {source.n:,} rows.")
        label_values, class_names = None, source.class_names
        if labels is not None:
            table = read_label_table(Path(labels), "--labels")
            label_values, class_names = align_labels(table, id_list, source.n, "--labels", Path(labels),
                                                     names=names, source=_label(path, option))
        elif source.labels is not None:
            from ccli.metrics.inputs import LabelTable

            table = LabelTable(None, np.asarray(source.labels).reshape(-1))
            label_values, class_names = align_labels(table, None, source.n, "labels in", path,
                                                     names=names or class_names, source=_label(path, option))
        elif names is not None:
            raise BadInput("--names needs labels: give --labels FILE (or labels stored in the file).")
        config = {
            "import": {"v": IMPORT_VERSION, "file": _file_digest(path), "format": path.suffix.lower(),
                       "labels": _array_digest(label_values), "names": list(class_names or []),
                       "ids": _array_digest(id_list), "dtype": dtype},
        }
        key = content_key("features", config)
        target = output_path(out, cache_root(cache_dir), "features", key, force=force)

        def build(tmp_target: Path) -> None:
            attrs = {"source": str(path), "normalized": False, "imported": True}
            with ArtifactWriter(tmp_target, "features", key, {**config, "source": str(path)}, [], attrs) as writer:
                writer.create("features", (source.n, source.d), np.dtype(dtype))
                start = 0
                for block in source.blocks():
                    block = np.asarray(block)
                    if block.dtype.kind == "f" and not np.isfinite(block).all():
                        bad = int((~np.isfinite(block)).any(axis=1).argmax()) + start
                        raise BadInput(f"{_label(path, option)} row {bad} holds NaN or infinite values.")
                    writer.write_rows("features", start, block.astype(dtype, copy=False))
                    start += len(block)
                n_labels = label_values if label_values is not None else np.full(source.n, -1, dtype=np.int64)
                writer.write("labels", np.asarray(n_labels, dtype=np.int64))
                writer.write("index", np.arange(source.n, dtype=np.int64))
                write_sample_ids(writer, id_list, class_names)

        hit = get_or_compute(target, "features", key, build, force=force)
        return target, hit
    finally:
        source.close()


def is_plain_features(path: Path) -> bool:
    """A file a features option should import first: an array or text file, or a non-ccli HDF5."""
    suffix = path.suffix.lower()
    if suffix in ARRAY_SUFFIXES + TEXT_SUFFIXES:
        return True
    if suffix in HDF5_SUFFIXES and path.is_file():
        import h5py

        try:
            with h5py.File(path, "r") as h5:
                return "kind" not in h5.attrs and "features" in h5
        except OSError:
            return False
    return False


def plain_features_source_facts(path: Path | None, option: str = "--features") -> tuple[int, int | None] | None:
    """(rows, label classes or None) of a file `ensure_features` would import, else None: what a
    command checks against the user's own file before the import is cached."""
    if path is None or not is_plain_features(Path(path).expanduser()):
        return None
    source = open_source(Path(path).expanduser(), option)
    try:
        if source.labels is None:
            return source.n, None
        if source.class_names:
            return source.n, len(source.class_names)
        known = [v for v in np.asarray(source.labels).tolist() if not (isinstance(v, int) and v < 0)]
        return source.n, len(set(known)) or None
    finally:
        source.close()


def plain_features_rows(path: Path | None, option: str = "--features") -> int | None:
    """The row count of a file `ensure_features` would import (read from its header), else None."""
    facts = plain_features_source_facts(path, option)
    return None if facts is None else facts[0]


def ensure_features(path: Path | None, option: str = "--features", cache_dir=None) -> Path | None:
    """A features artifact for `path`: itself, or its on-the-fly import (cached under a content key)."""
    if path is None:
        return None
    path = Path(path).expanduser()
    if not is_plain_features(path):
        return path
    from ccli import log

    imported, hit = import_features(path, cache_dir=cache_dir, option=option)
    log.info(f"{option} {path}: {'using the import' if hit else 'imported as'} {imported}")
    return imported
