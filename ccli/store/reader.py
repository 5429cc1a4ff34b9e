"""Opening and reading artifacts: validation with one-sentence errors, and checked reads.

`open_artifact` checks everything cheap before it hands out an `Artifact` (kind, schema
version, required datasets, row counts, the attributes digest); `Artifact.read` verifies a
dataset's checksum as it is read. Both turn every kind of damage into BadInput, so a consumer
never builds on a file it cannot trust. Writing lives in ccli.store.artifact.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ccli.errors import BadInput
from ccli.store.digests import ATTRS_CHECKSUM, _new_hasher, attrs_digest, content_hash
from ccli.store.schema import KINDS, SCHEMA_VERSION


class Artifact:
    """An opened artifact: validated root attributes plus the open h5py file."""

    def __init__(self, path: Path, h5):
        self.path = path
        self.h5 = h5
        attrs = h5.attrs
        self.kind = _str(attrs["kind"])
        self.schema_version = _schema_version(attrs["schema_version"], str(path))
        # A file made elsewhere may carry no key: it gets one from its content (see content_hash),
        # so two different keyless inputs never share a cache entry downstream.
        self._key = _str(attrs.get("key", ""))
        self.ccli_version = _str(attrs.get("ccli_version", ""))
        self.created = _str(attrs.get("created", ""))
        try:
            self.inputs = list(json.loads(_str(attrs.get("inputs", "[]"))))
        except (json.JSONDecodeError, TypeError):
            self.inputs = []
        self._streams: dict[str, list] = {}  # dataset -> [next row, hasher] while read in order

    @property
    def key(self) -> str:
        if not self._key:
            self._key = content_hash(self.h5)
        return self._key

    @property
    def config(self) -> dict:
        import yaml

        text = _str(self.h5.attrs.get("config", ""))
        return yaml.safe_load(text) or {} if text else {}

    def attr(self, name: str, default=None):
        value = self.h5.attrs.get(name, default)
        return _str(value) if isinstance(value, (bytes, np.bytes_)) else value

    def __contains__(self, name: str) -> bool:
        return name in self.h5

    def read(self, name: str, rows=slice(None)) -> np.ndarray:
        """Read a dataset (or a row slice of it), turning a corrupt block into BadInput."""
        if name not in self.h5:
            raise BadInput(f"{self.path} has no dataset '{name}'.")
        try:
            data = self.h5[name][rows]
        except (OSError, RuntimeError, ValueError) as exc:
            raise BadInput(f"{self.path} is damaged: dataset '{name}' cannot be read ({_first_line(exc)}).") from exc
        self._check_as_read(name, rows, data)
        return data

    def _check_as_read(self, name: str, rows, data) -> None:
        """Verify a dataset's checksum as it is read: a whole read, or row blocks read in order.

        Reading out of order (or only part of a dataset) verifies nothing; reading every row
        from the first on, in one call or in consecutive slices, ends with the comparison
        against the stored checksum, so a consumer never builds on silently damaged data.
        """
        dset = self.h5[name]
        stored = _str(dset.attrs.get("checksum", ""))
        if not stored or not isinstance(rows, slice) or rows.step not in (None, 1):
            return
        total = dset.shape[0] if dset.shape else 0
        start = 0 if rows.start is None else rows.start
        if dset.shape == () or start == 0:
            self._streams[name] = [0, _new_hasher()]
        stream = self._streams.get(name)
        if stream is None or stream[0] != start:
            self._streams.pop(name, None)
            return
        stream[1].update(np.ascontiguousarray(data).tobytes())
        stream[0] = start + (len(data) if dset.shape else 0)
        if stream[0] >= total:
            self._streams.pop(name, None)
            if "blake2b:" + stream[1].hexdigest() != stored:
                raise BadInput(f"{self.path} is damaged: dataset '{name}' does not match its checksum "
                               "(recompute it, or run `ccli cache gc` if it is in the cache).")

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.h5[name].shape)

    def describe(self) -> dict:
        """Root attributes and every dataset's shape, dtype and compression (for `cache info`)."""
        import h5py

        attrs = {k: _plain_attr(self.attr(k)) for k in self.h5.attrs.keys()}
        datasets: dict[str, dict] = {}

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                datasets[name] = {"shape": list(obj.shape), "dtype": str(obj.dtype), "compression": obj.compression}

        self.h5.visititems(visit)
        return {"attrs": attrs, "datasets": datasets}

    def close(self) -> None:
        self.h5.close()

    def __enter__(self) -> "Artifact":
        return self

    def __exit__(self, *exc) -> None:
        self.close()



def _str(value) -> str:
    if isinstance(value, (bytes, np.bytes_)):
        return value.decode(errors="replace")
    return str(value)


def _plain_attr(value):
    """An HDF5 attribute as a JSON/YAML-friendly value (arrays, e.g. a graph's shape, as lists)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _schema_version(value, label: str) -> int:
    """The root `schema_version` attribute as an int, or BadInput when it is not one."""
    try:
        if isinstance(value, (bytes, np.bytes_, str)) or np.ndim(value) != 0:
            raise ValueError(value)
        number = float(value)
        if number != int(number) or number < 1:
            raise ValueError(value)
        return int(number)
    except (TypeError, ValueError, OverflowError):
        raise BadInput(f"{label} has schema_version {_str(value)!r}, which is not a positive integer "
                       "(corrupt or not a ccli artifact).") from None


def open_artifact(path: str | os.PathLike, kind: str | Sequence[str] | None = None, *, what: str = "") -> Artifact:
    """Open and validate an artifact, or raise BadInput with one sentence saying what is wrong.

    `kind` restricts the accepted kinds; `what` names the option the path came from, for the
    message (e.g. "--labels").
    """
    import h5py

    path = Path(path)
    label = f"{what} {path}".strip() if what else str(path)
    if not path.exists():
        raise BadInput(f"{label} does not exist.")
    if path.is_dir():
        raise BadInput(f"{label} is a directory, not an artifact file.")
    if not os.access(path, os.R_OK):
        raise BadInput(f"{label} is not readable (permission denied).")
    if path.stat().st_size == 0:
        raise BadInput(f"{label} is empty.")
    try:
        h5 = h5py.File(path, "r")
    except (OSError, RuntimeError, ValueError) as exc:
        raise BadInput(f"{label} is {_not_hdf5(path)}.") from exc
    try:
        if "kind" not in h5.attrs:
            datasets = ", ".join(sorted(h5.keys())[:5]) or "none"
            raise BadInput(f"{label} is an HDF5 file but not a ccli artifact (no 'kind' attribute; datasets: "
                           f"{datasets}); turn an array of features into one with `ccli import {path}`.")
        if "schema_version" not in h5.attrs:
            raise BadInput(f"{label} has kind '{_str(h5.attrs['kind'])}' but no 'schema_version' attribute; "
                           "write schema_version=1 beside kind, or `ccli import` the arrays.")
        found = _str(h5.attrs["kind"])
        version = _schema_version(h5.attrs["schema_version"], label)
        if found not in KINDS:
            raise BadInput(f"{label} has unknown kind '{found}'.")
        if version > SCHEMA_VERSION:
            raise BadInput(
                f"{label} uses schema version {version}, newer than this ccli reads ({SCHEMA_VERSION}); upgrade ccli."
            )
        wanted = (kind,) if isinstance(kind, str) else tuple(kind or ())
        if wanted and found not in wanted:
            raise BadInput(f"{label} is a {found} artifact, but a {' or '.join(wanted)} artifact is needed here.")
        required, _ = KINDS[found]
        missing = [name for name in required if name not in h5]
        if missing:
            raise BadInput(f"{label} is a {found} artifact missing its '{missing[0]}' dataset (corrupt or incomplete).")
        check_row_counts(h5, found, label)
        digest = attrs_digest(h5)  # reads every attribute: unreadable metadata fails here
        stored = h5.attrs.get(ATTRS_CHECKSUM)
        if stored is not None and _str(stored) != digest:
            raise BadInput(f"{label} is damaged: its attributes do not match their checksum.")
        return Artifact(path, h5)
    except BadInput:
        h5.close()
        raise
    except Exception as exc:  # noqa: BLE001 - damaged metadata fails in h5py in many ways
        h5.close()
        raise BadInput(f"{label} is damaged: its metadata cannot be read ({_first_line(exc)}).") from exc
    except BaseException:
        h5.close()
        raise


def check_row_counts(h5, kind: str, label: str) -> None:
    """BadInput when the sample-axis datasets of an artifact disagree on N (a cheap shape check)."""
    from ccli.store.schema import ROW_ALIGNED

    lengths = {}
    for name in ROW_ALIGNED[kind]:
        obj = h5.get(name)
        if obj is not None and hasattr(obj, "shape"):
            if len(obj.shape) == 0:
                raise BadInput(f"{label}: dataset '{name}' is a scalar, but it must hold one row per sample.")
            lengths[name] = obj.shape[0]
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"'{n}' {v:,}" for n, v in lengths.items())
        raise BadInput(f"{label} is inconsistent: its datasets disagree on the number of samples ({detail}).")


def _not_hdf5(path: Path) -> str:
    """What a file that h5py cannot open is, for the message: a NumPy array, a CSV, or a broken HDF5."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        head = b""
    if head.startswith(b"\x93NUMPY"):
        return "a NumPy .npy array, not an HDF5 artifact; pass it where features are expected or `ccli import` it"
    if path.suffix.lower() in (".pt", ".pth", ".ckpt"):
        return "a PyTorch checkpoint, not an HDF5 artifact"
    if head.startswith(b"PK"):
        if path.suffix.lower() == ".npz":
            return "a NumPy .npz archive, not an HDF5 artifact; pass it where features are expected or `ccli import` it"
        return "a zip archive, not an HDF5 artifact"
    if head.startswith(b"\x89HDF"):
        return "an HDF5 file that cannot be read (truncated or corrupt)"
    return "not an HDF5 file (expected a ccli artifact; `ccli import` turns .npy/.npz/.csv features into one)"
