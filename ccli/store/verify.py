"""Checking artifacts: the cheap test a cache hit makes, and the full verification
(`ccli cache verify`, `gc`, and every cache hit) that re-hashes each dataset against the
checksum stored when it was written.
"""

from __future__ import annotations

from pathlib import Path

from ccli.errors import BadInput
from ccli.store.digests import _all_datasets, _hash_dataset
from ccli.store.reader import Artifact, _first_line, _str, open_artifact


def is_valid_artifact(path: Path, kind: str, key: str | None = None) -> bool:
    """Cheap check used for cache hits: the file opens, has the kind, and (if given) the key."""
    try:
        with open_artifact(path, kind) as art:
            return key is None or art.key == key
    except BadInput:
        return False


def verify_artifact(path: Path) -> list[str]:
    """Every problem found in an artifact (empty list = healthy): schema, shapes, checksums."""
    from ccli.store.schema import ROW_ALIGNED

    problems: list[str] = []
    try:
        art = open_artifact(path)
    except BadInput as exc:
        return [str(exc)]
    try:
        with art:
            _verify_open(art, problems)
    except Exception as exc:  # noqa: BLE001 - damaged metadata can fail anywhere in h5py
        problems.append(f"cannot be read ({type(exc).__name__}: {_first_line(exc)})")
    return problems


def _verify_open(art: "Artifact", problems: list[str]) -> None:
    from ccli.store.schema import ROW_ALIGNED

    lengths = {}
    for name in ROW_ALIGNED[art.kind]:
        if name in art.h5:
            lengths[name] = art.h5[name].shape[0]
    if len(set(lengths.values())) > 1:
        problems.append(f"row counts disagree: {lengths}")
    for name in _all_datasets(art.h5):
        dset = art.h5[name]
        stored = _str(dset.attrs.get("checksum", ""))
        if not stored:
            problems.append(f"dataset '{name}' has no checksum")
            continue
        try:
            actual = _hash_dataset(dset)
        except (OSError, RuntimeError) as exc:
            problems.append(f"dataset '{name}' cannot be read ({exc})")
            continue
        if actual != stored:
            problems.append(f"dataset '{name}' checksum mismatch (stored {stored}, actual {actual})")
    if art.kind == "graph" and "indptr" in art.h5:
        indptr = art.h5["indptr"]
        if indptr.shape[0] and int(indptr[-1]) != art.h5["indices"].shape[0]:
            problems.append("graph indptr[-1] does not match the number of stored entries")
