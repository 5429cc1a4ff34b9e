"""Low-level readers for the on-disk dataset formats: IDX, CIFAR pickles, STL-10 binaries, arrays.

Each reader takes a path, returns numpy arrays, and turns every way the file can be wrong into a
`BadInput` that names the file. They are vectorised (`np.frombuffer` over whole files, never a
Python loop per image) because MNIST-sized datasets must load in well under a second.

`sources.py` decides *which* files a dataset spec needs; this module only knows *how* to read one.
"""

from __future__ import annotations

import codecs
import os
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np

from ccli.errors import BadInput


def read_bytes(path: Path) -> bytearray:
    """The whole file as a writable buffer (so arrays viewing it are writable, as torch wants)."""
    try:
        size = os.path.getsize(path)
        buf = bytearray(size)
        with open(path, "rb") as f:
            got = f.readinto(buf)
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror or exc}.") from exc
    if got != size:
        raise BadInput(f"{path} changed size while being read.")
    return buf


def read_maybe_gzip(path: Path) -> bytes | bytearray:
    """File contents, transparently gunzipped when the name ends in .gz."""
    raw = read_bytes(path)
    if path.name.endswith(".gz"):
        try:
            # wbits=31 is gzip framing; a single decompress call is faster than GzipFile's stream.
            return zlib.decompress(raw, wbits=31)
        except zlib.error as exc:
            raise BadInput(f"{path} is not a valid gzip file ({exc}).") from exc
    return raw


# ---------------------------------------------------------------------------------------------
# IDX (MNIST, Fashion-MNIST): magic 0x0000 | dtype code | ndim, then ndim big-endian uint32 dims.

_IDX_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def parse_idx(data: bytes | bytearray, path: Path) -> np.ndarray:
    """Decode an IDX buffer; the byte count must match the header exactly (truncation shows here)."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES or data[3] == 0:
        raise BadInput(f"{path} is not an IDX file (bad magic number).")
    dtype = _IDX_DTYPES[data[2]]
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise BadInput(f"{path} is truncated (its IDX header is incomplete).")
    dims = struct.unpack(f">{ndim}I", bytes(data[4:header]))
    count = int(np.prod(dims, dtype=np.int64))
    expected = count * dtype.itemsize
    found = len(data) - header
    if found != expected:
        shape = "×".join(map(str, dims))
        raise BadInput(
            f"{path} is truncated or corrupt: its header announces {shape} values "
            f"({expected} bytes) but the file holds {found} bytes of data."
        )
    return np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(dims)


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX file that must hold uint8 data with `ndim` dimensions (3 for images, 1 for labels)."""
    array = parse_idx(read_maybe_gzip(path), path)
    if array.dtype != np.uint8 or array.ndim != ndim:
        raise BadInput(
            f"{path} holds a {array.ndim}-d {array.dtype} IDX array, expected {ndim}-d uint8."
        )
    return array


# ---------------------------------------------------------------------------------------------
# CIFAR python pickles. They are pickles, so unpickling an arbitrary file could run arbitrary
# code; we only let through the handful of globals that numpy arrays, lists and bytes need.


def _allowed_pickle_globals() -> dict[tuple[str, str], object]:
    # Resolve the callables from live numpy objects instead of importing them by name: numpy 2
    # moved numpy.core to numpy._core, and pickles written by either version name either one.
    sample = np.zeros(1, np.uint8)
    reconstruct = sample.__reduce__()[0]
    frombuffer = sample.__reduce_ex__(5)[0]
    scalar = np.int64(0).__reduce__()[0]
    allowed: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,  # how protocol-2 pickles spell a bytes object
    }
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
    return allowed


class _ArrayOnlyUnpickler(pickle.Unpickler):
    _allowed = _allowed_pickle_globals()

    def find_class(self, module: str, name: str):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}") from None


def read_cifar_pickle(path: Path) -> dict[str, object]:
    """A CIFAR batch/meta pickle as a dict with str keys (py2 files give str, py3 re-pickles bytes)."""
    try:
        with open(path, "rb") as f:
            # latin1 is how numpy asks py2 pickles holding arrays to be read.
            obj = _ArrayOnlyUnpickler(f, encoding="latin1").load()
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror or exc}.") from exc
    except Exception as exc:  # pickle raises many types (EOFError, ValueError, UnpicklingError…)
        raise BadInput(f"{path} is corrupt or not a CIFAR python pickle ({exc}).") from exc
    if not isinstance(obj, dict):
        raise BadInput(f"{path} is not a CIFAR python pickle (it holds no dict).")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def cifar_field(batch: dict[str, object], key: str, path: Path) -> object:
    try:
        return batch[key]
    except KeyError:
        raise BadInput(f"{path} has no '{key}' entry; is it the right CIFAR file?") from None


def cifar_images(batch: dict[str, object], path: Path) -> np.ndarray:
    """b'data' [n, 3072] rows of R, G, B planes of 32×32 → [n, 32, 32, 3]."""
    data = np.asarray(cifar_field(batch, "data", path))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise BadInput(f"{path} has 'data' of shape {data.shape} {data.dtype}, expected [n, 3072] uint8.")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def cifar_labels(batch: dict[str, object], key: str, count: int, num_classes: int, path: Path) -> np.ndarray:
    try:
        labels = np.asarray(cifar_field(batch, key, path), dtype=np.int64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise BadInput(f"{path} has a '{key}' entry that is not a list of integers.") from exc
    check_labels(labels, count, path, num_classes)
    return labels


def decode_names(names: object, path: Path) -> list[str]:
    try:
        return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]  # type: ignore[union-attr]
    except (TypeError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path} holds class names that are not a list of strings.") from exc


def check_labels(labels: np.ndarray, count: int, path: Path, num_classes: int | None = None) -> None:
    """Label count must match the images, and values the dataset's classes (or -1 for unknown)."""
    if labels.shape[0] != count:
        raise BadInput(f"{path} has {labels.shape[0]} labels for {count} images.")
    if num_classes is not None and labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise BadInput(
            f"{path} has labels outside 0..{num_classes - 1} (found {labels.min()}..{labels.max()})."
        )


# ---------------------------------------------------------------------------------------------
# STL-10 binaries: raw uint8, each image 3×96×96 stored column-major (channel, column, row).

STL_SIDE = 96
STL_IMAGE_BYTES = 3 * STL_SIDE * STL_SIDE
_STL_CHUNK = 2048  # images per read: bounds the temporary buffer (~57 MB) for the 2.7 GB file


def stl_image_count(path: Path) -> int:
    size = _file_size(path)
    if size % STL_IMAGE_BYTES:
        raise BadInput(
            f"{path} has {size} bytes, not a whole number of 96×96×3 images "
            f"({STL_IMAGE_BYTES} bytes each); the file is truncated or corrupt."
        )
    return size // STL_IMAGE_BYTES


def read_stl_images_into(path: Path, out: np.ndarray) -> None:
    """Fill `out` [n, 96, 96, 3] from an STL _X.bin, chunk by chunk, without a full-size temporary."""
    n = out.shape[0]
    try:
        with open(path, "rb") as f:
            for start in range(0, n, _STL_CHUNK):
                k = min(_STL_CHUNK, n - start)
                buf = f.read(k * STL_IMAGE_BYTES)
                if len(buf) != k * STL_IMAGE_BYTES:
                    raise BadInput(f"{path} is shorter than expected; the file is truncated.")
                # File axes are (image, channel, column, row); ours are (image, row, column, channel).
                out[start : start + k] = np.frombuffer(buf, np.uint8).reshape(
                    k, 3, STL_SIDE, STL_SIDE
                ).transpose(0, 3, 2, 1)
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror or exc}.") from exc


def read_stl_labels(path: Path, count: int) -> np.ndarray:
    """STL _y.bin: one uint8 label 1..10 per image → int64 0..9."""
    labels = np.frombuffer(read_bytes(path), np.uint8).astype(np.int64)
    if labels.shape[0] != count:
        raise BadInput(f"{path} has {labels.shape[0]} labels for {count} images.")
    if labels.size and (labels.min() < 1 or labels.max() > 10):
        raise BadInput(f"{path} has labels outside 1..10; the file is corrupt.")
    return labels - 1


def _file_size(path: Path) -> int:
    try:
        return os.path.getsize(path)
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror or exc}.") from exc


# ---------------------------------------------------------------------------------------------
# In-memory arrays from npz/h5 files: coerce to uint8 [N, H, W, C].


def coerce_images(images: np.ndarray, path: Path) -> np.ndarray:
    """[N,H,W] or [N,H,W,C] (C 1 or 3), uint8, integer 0..255 or float in [0, 1] → uint8 NHWC."""
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise BadInput(
            f"{path} has 'images' of shape {images.shape}; expected [N, H, W] or [N, H, W, C]."
        )
    if images.shape[-1] not in (1, 3):
        hint = (
            " (it looks channels-first; ccli expects channels last)"
            if images.shape[1] in (1, 3)
            else ""
        )
        raise BadInput(
            f"{path} has 'images' of shape {images.shape} with {images.shape[-1]} channels, "
            f"expected 1 or 3{hint}."
        )
    if images.dtype == np.uint8:
        return images
    if np.issubdtype(images.dtype, np.floating):
        # Floats must be in [0, 1]: guessing that 0..255 floats are meant is how silent
        # all-white datasets happen.
        if images.size and not (np.isfinite(images).all() and images.min() >= 0 and images.max() <= 1):
            raise BadInput(f"{path} has float 'images' outside [0, 1]; store uint8 or scale to [0, 1].")
        return np.rint(images * 255.0).astype(np.uint8)
    if np.issubdtype(images.dtype, np.integer) and images.dtype != np.bool_:
        if images.size and (images.min() < 0 or images.max() > 255):
            raise BadInput(f"{path} has integer 'images' outside 0..255.")
        return images.astype(np.uint8)
    raise BadInput(f"{path} has 'images' of dtype {images.dtype}; expected uint8 or float in [0, 1].")


def coerce_labels(labels: np.ndarray, count: int, path: Path) -> np.ndarray:
    """Optional 'labels': integers, one per image, -1 meaning unknown."""
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise BadInput(f"{path} has 'labels' of shape {labels.shape} {labels.dtype}; expected [N] integers.")
    labels = labels.astype(np.int64)
    check_labels(labels, count, path)
    if labels.size and labels.min() < -1:
        raise BadInput(f"{path} has negative labels other than -1 (which means unknown).")
    return labels
