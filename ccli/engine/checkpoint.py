"""Checkpoint files: atomic writes, and loading that turns every kind of damage into one sentence.

A checkpoint is a `torch.save`d dict with `format: "ccli-checkpoint"` and a `version`; it is
written to a temporary file in the same folder, fsynced and renamed over the final name, so
a crash mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path
from typing import Any

from ccli.errors import BadInput, CcliError

FORMAT = "ccli-checkpoint"
VERSION = 1


def save_atomic(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        with open(tmp, "wb") as fh:
            torch.save({"format": FORMAT, "version": VERSION, **payload}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise CcliError(f"cannot write checkpoint {path}: {exc.strerror or exc}.") from exc
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_checkpoint(path: str | os.PathLike, what: str = "checkpoint") -> dict[str, Any]:
    """Load a ccli checkpoint on CPU, or raise BadInput naming the file and the problem."""
    import pickle
    import zipfile

    import torch

    path = Path(path)
    label = f"{what} {path}"
    if not path.exists():
        raise BadInput(f"{label} does not exist.")
    if path.is_dir():
        raise BadInput(f"{label} is a directory, not a checkpoint file.")
    if path.stat().st_size == 0:
        raise BadInput(f"{label} is empty.")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError, OSError, ValueError) as exc:
        raise BadInput(f"{label} cannot be read (truncated or not a ccli checkpoint).") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BadInput(f"{label} is not a ccli checkpoint.")
    if int(data.get("version", 0)) > VERSION:
        raise BadInput(f"{label} has checkpoint version {data['version']}, newer than this ccli reads ({VERSION}).")
    return data


def file_identity(path: str | os.PathLike) -> str:
    """Content hash of a file (the checkpoint's identity in downstream cache keys)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()[:24]
