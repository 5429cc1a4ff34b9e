"""Every digest the store computes: content keys, dataset checksums and the attributes digest.

They live apart from the writer and the reader because both sides compute the same ones: the
writer stores a checksum while it writes, the reader (and `ccli cache verify`) recomputes it, and
a digest that the two computed differently would make every healthy artifact look damaged.

Every dataset carries a `checksum` attribute (BLAKE2b of its C-order bytes, hashed while it
is written) so `ccli cache verify` can detect bit rot or a file modified behind our back.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping, Sequence

import numpy as np

from ccli.store.schema import SCHEMA_VERSION

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


def _all_datasets(h5) -> list[str]:
    import h5py

    names: list[str] = []
    h5.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return names
