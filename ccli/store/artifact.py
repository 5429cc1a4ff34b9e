"""Reading and writing self-describing HDF5 artifacts.

Writes are atomic: everything goes to a temporary file in the destination folder, which is
flushed, fsynced and renamed over the final name only when the writer exits cleanly. A crash
or an exception therefore never leaves a half-written artifact under its real name.

Every dataset carries a `checksum` attribute (BLAKE2b of its C-order bytes, hashed while it
is written) so `ccli cache verify` can detect bit rot or a file modified behind our back.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ccli import __version__
from ccli.errors import BadInput, CcliError
from ccli.store.schema import KINDS, SCHEMA_VERSION

# Rows per block when hashing or copying large datasets: bounded memory whatever N is.
_BLOCK_BYTES = 64 * 2**20


def content_key(kind: str, config: Mapping[str, Any], inputs: Sequence[str] = ()) -> str:
    """Content hash of what makes an artifact: its kind, the config and its inputs' keys.

    The same command on the same inputs with the same config gets the same key, which is
    what makes a re-run a cache hit.
    """
    payload = json.dumps(
        {"kind": kind, "schema": SCHEMA_VERSION, "config": config, "inputs": list(inputs)},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def _new_hasher():
    return hashlib.blake2b(digest_size=16)


def _hash_dataset(dset) -> str:
    """Checksum of a stored dataset, read in row blocks so memory stays bounded."""
    h = _new_hasher()
    if dset.shape == () or dset.size == 0:
        h.update(np.ascontiguousarray(dset[()]).tobytes())
        return "blake2b:" + h.hexdigest()
    row_bytes = max(1, int(np.prod(dset.shape[1:], dtype=np.int64)) * dset.dtype.itemsize)
    step = max(1, _BLOCK_BYTES // row_bytes)
    for start in range(0, dset.shape[0], step):
        h.update(np.ascontiguousarray(dset[start : start + step]).tobytes())
    return "blake2b:" + h.hexdigest()


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

    def create(self, name: str, shape: tuple[int, ...], dtype, **h5_options):
        """Create a dataset to be filled in order with `write_rows` (streaming writes)."""
        dtype = np.dtype(dtype)
        self._reserve(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize)
        options = {**_chunking(shape, dtype), **_default_compression(dtype), **h5_options}
        dset = self._h5.create_dataset(name, shape=shape, dtype=dtype, **options)
        self._hashers[name] = _new_hasher()
        self._next_row[name] = 0
        return dset

    def write_rows(self, name: str, start: int, block) -> None:
        """Write rows [start, start+len(block)); rows must arrive in order (for the checksum)."""
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


# Root attribute holding a digest of every attribute in the file (root, groups, datasets:
# kind, key, config, shapes, the datasets' checksums…), so a flipped byte in the metadata a
# reader trusts is caught like one in the data.
ATTRS_CHECKSUM = "attrs_checksum"


def attrs_digest(h5) -> str:
    """BLAKE2b over every attribute of every object, in a fixed order (ATTRS_CHECKSUM excluded)."""
    import h5py

    h = _new_hasher()
    objects = [("/", h5)]
    h5.visititems(lambda name, obj: objects.append((name, obj)))
    for name, obj in sorted(objects, key=lambda item: item[0]):
        kind = "d" if isinstance(obj, h5py.Dataset) else "g"
        h.update(f"{kind}:{name}\0".encode())
        if kind == "d":
            h.update(f"{obj.shape}|{obj.dtype.str}\0".encode())
        for key in sorted(obj.attrs.keys()):
            if name == "/" and key == ATTRS_CHECKSUM:
                continue
            value = obj.attrs[key]
            data = value.tobytes() if isinstance(value, np.ndarray) else repr(value).encode()
            h.update(key.encode() + b"=" + data + b"\0")
    return "blake2b:" + h.hexdigest()


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


# ------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------
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


def content_hash(h5) -> str:
    """A key from what an artifact holds: every dataset's name, shape, dtype and bytes, in name order.

    Used for files without a `key` attribute (written by hand or by another tool); read in row
    blocks, so memory stays bounded whatever N is.
    """
    digest = hashlib.sha256(b"ccli-content-v1")
    for name in sorted(_all_datasets(h5)):
        dset = h5[name]
        digest.update(f"\0{name}\0{tuple(dset.shape)}\0{dset.dtype.str}\0".encode())
        digest.update(_hash_dataset(dset).encode())
    return digest.hexdigest()[:24]


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


def _all_datasets(h5) -> list[str]:
    import h5py

    names: list[str] = []
    h5.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return names

