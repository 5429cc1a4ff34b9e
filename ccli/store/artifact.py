"""Writing self-describing HDF5 artifacts (ArtifactWriter).

Writes are atomic: everything goes to a temporary file in the destination folder, which is
flushed, fsynced and renamed over the final name only when the writer exits cleanly. A crash
or an exception therefore never leaves a half-written artifact under its real name.

Each dataset's checksum is hashed while it is written and the root attributes get a digest of
their own (ccli.store.digests). Opening and reading an artifact lives in ccli.store.reader.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import secrets
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ccli import __version__
from ccli.errors import CcliError
from ccli.store.digests import ATTRS_CHECKSUM, _new_hasher, attrs_digest
from ccli.store.schema import KINDS, SCHEMA_VERSION


def _default_compression(dtype: np.dtype) -> dict[str, Any]:
    # Integer arrays (labels, neighbour indices, CSR structure) shrink several-fold with a
    # cheap gzip+shuffle; float features barely compress, so they are only chunked.
    if np.issubdtype(dtype, np.integer):
        return {"compression": "gzip", "compression_opts": 1, "shuffle": True}
    return {}


class ArtifactWriter:
    """Context manager that builds one artifact in a temp file and renames it into place.

    >>> with ArtifactWriter(path, "features", key, config, inputs) as w:
    ...     w.write("labels", labels)
    ...     w.create("features", (n, d), np.float16)
    ...     for start, block in blocks:
    ...         w.write_rows("features", start, block)
    """

    def __init__(
        self,
        path: str | os.PathLike,
        kind: str,
        key: str,
        config: Mapping[str, Any],
        inputs: Sequence[str] = (),
        attrs: Mapping[str, Any] | None = None,
    ):
        if kind not in KINDS:
            raise ValueError(f"unknown artifact kind {kind!r}")
        self.path = Path(path)
        self.kind = kind
        self.key = key
        self.config = dict(config)
        self.inputs = list(inputs)
        self.attrs = dict(attrs or {})
        self._tmp = self.path.parent / f".{self.path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
        self._h5 = None
        self._hashers: dict[str, Any] = {}
        self._next_row: dict[str, int] = {}
        self._rows_written: dict[str, "np.ndarray"] = {}  # datasets filled in any order (create(any_order=True))
        self._planned = 0  # bytes of the datasets created so far (uncompressed upper bound)

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> "ArtifactWriter":
        import h5py

        from ccli.store.space import ensure_space, write_error

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            ensure_space(self.path, 0)
            # No chunk cache: every write reaches the file at once, so a full disk fails that
            # write (caught below) instead of a later cache flush inside h5py's deallocator,
            # which crashes the interpreter (exit 139).
            self._h5 = h5py.File(self._tmp, "w", rdcc_nbytes=0)
        except OSError as exc:
            raise write_error(self.path, exc) from exc
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        from ccli.store.space import is_no_space, write_error

        try:
            if exc_type is None:
                self._finish()
                self._h5.flush()
                self._h5.close()
                self._h5 = None
                with open(self._tmp, "rb") as fh:
                    os.fsync(fh.fileno())
                os.replace(self._tmp, self.path)
        except (OSError, RuntimeError) as failure:
            # A full disk surfaces here as an HDF5 flush/close error: one sentence, no temp left.
            raise write_error(self.path, failure) from failure
        finally:
            self._abandon()
        if exc is not None and not isinstance(exc, CcliError) and is_no_space(exc):
            raise write_error(self.path, exc) from exc
        return False

    def _abandon(self) -> None:
        """Close the HDF5 handle (ignoring errors of a full disk) and remove the temp file."""
        if self._h5 is not None:
            try:
                os.truncate(self._tmp, 0)  # free the space first, so closing can flush its metadata
            except OSError:
                pass
            try:
                self._h5.close()
            except Exception:  # noqa: BLE001 - the handle is being discarded
                pass
        try:
            self._tmp.unlink()
        except FileNotFoundError:
            pass

    def _reserve(self, nbytes: int) -> None:
        """Refuse, before writing, a dataset that cannot fit on the destination's filesystem."""
        from ccli.store.space import ensure_space

        self._planned += int(nbytes)
        ensure_space(self.path, self._planned, already=self._tmp)

    def _finish(self) -> None:
        required, _ = KINDS[self.kind]
        missing = [name for name in required if name not in self._h5]
        if missing:
            raise ValueError(f"{self.kind} artifact is missing datasets {missing}")
        for name, written in self._rows_written.items():
            if not written.all():
                raise ValueError(f"dataset {name} was not completely written")
            self._hash_back(name)
        for name, hasher in self._hashers.items():
            dset = self._h5[name]
            if self._next_row.get(name, dset.shape[0] if dset.shape else 0) != (dset.shape[0] if dset.shape else 0):
                raise ValueError(f"dataset {name} was not completely written")
            dset.attrs["checksum"] = "blake2b:" + hasher.hexdigest()
        root = self._h5.attrs
        root["kind"] = self.kind
        root["schema_version"] = SCHEMA_VERSION
        root["ccli_version"] = __version__
        root["key"] = self.key
        root["inputs"] = json.dumps(self.inputs)
        root["config"] = _yaml_dump(self.config)
        root["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        for name, value in self.attrs.items():
            root[name] = value
        root[ATTRS_CHECKSUM] = attrs_digest(self._h5)

    # -- datasets --------------------------------------------------------------------------
    def write(self, name: str, array, **h5_options) -> None:
        """Store a whole array under `name` (a path like 'views/weak' creates the group)."""
        array = np.ascontiguousarray(array)
        self._reserve(array.nbytes)
        options = {**_chunking(array.shape, array.dtype), **_default_compression(array.dtype), **h5_options}
        if array.ndim == 0:
            options = {}
        dset = self._h5.create_dataset(name, data=array, **options)
        h = _new_hasher()
        h.update(array.tobytes())
        dset.attrs["checksum"] = "blake2b:" + h.hexdigest()

    def create(self, name: str, shape: tuple[int, ...], dtype, *, any_order: bool = False, **h5_options):
        """Create a dataset to be filled with `write_rows` (streaming writes).

        Rows arrive in order by default, and are hashed as they come. With `any_order` (blocks
        that several processes computed, arriving as they finish) every row must be written once,
        and the checksum is hashed from the file when the writer finishes: the same digest.
        """
        dtype = np.dtype(dtype)
        self._reserve(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize)
        options = {**_chunking(shape, dtype), **_default_compression(dtype), **h5_options}
        dset = self._h5.create_dataset(name, shape=shape, dtype=dtype, **options)
        self._hashers[name] = _new_hasher()
        if any_order:
            self._rows_written[name] = np.zeros(shape[0] if shape else 0, dtype=bool)
        else:
            self._next_row[name] = 0
        return dset

    def _hash_back(self, name: str) -> None:
        """Hash an any-order dataset from the file, in row order (the digest of an in-order write)."""
        dset = self._h5[name]
        row_bytes = max(1, int(np.prod(dset.shape[1:], dtype=np.int64)) * dset.dtype.itemsize)
        step = max(1, (64 * 2**20) // row_bytes)
        for start in range(0, dset.shape[0], step):
            self._hashers[name].update(np.ascontiguousarray(dset[start : start + step]).tobytes())

    def write_rows(self, name: str, start: int, block) -> None:
        """Write rows [start, start+len(block)); in order unless created with `any_order`."""
        if name in self._rows_written:
            written = self._rows_written[name]
            stop = start + len(block)
            if start < 0 or stop > len(written) or written[start:stop].any():
                raise ValueError(f"rows {start}:{stop} of {name} are outside it or were written before")
            self._h5[name][start:stop] = np.ascontiguousarray(block, dtype=self._h5[name].dtype)
            written[start:stop] = True
            return
        if start != self._next_row[name]:
            raise ValueError(f"rows of {name} must be written in order: expected {self._next_row[name]}, got {start}")
        dset = self._h5[name]
        block = np.ascontiguousarray(block, dtype=dset.dtype)
        dset[start : start + len(block)] = block
        self._hashers[name].update(block.tobytes())
        self._next_row[name] = start + len(block)

    def set_attrs(self, name: str, **attrs) -> None:
        target = self._h5[name] if name in self._h5 else self._h5.require_group(name)
        for key, value in attrs.items():
            target.attrs[key] = value



def _chunking(shape: tuple[int, ...], dtype: np.dtype) -> dict[str, Any]:
    if len(shape) == 0 or shape[0] == 0:
        return {}
    row_bytes = max(1, int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(dtype).itemsize)
    rows = int(max(1, min(shape[0], (1 * 2**20) // row_bytes)))  # ~1 MiB chunks
    return {"chunks": (rows, *shape[1:])}


def _yaml_dump(config: Mapping[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(_plain(config), sort_keys=True)


def _plain(value):
    """Config values as YAML-safe builtins (tuples -> lists, paths -> str, numpy -> python)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
