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

from ccli.errors import BadInput

FORMAT = "ccli-checkpoint"
VERSION = 1


def save_atomic(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    import torch

    from ccli.store.space import ensure_space, write_error

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    # The tensors are most of a checkpoint's bytes: refuse before writing when they cannot fit
    # (torch.save on a full disk fails deep inside its zip writer).
    ensure_space(path, _tensor_bytes(payload))
    try:
        with open(tmp, "wb") as fh:
            torch.save({"format": FORMAT, "version": VERSION, **payload}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:
        raise write_error(path, exc) from exc
    finally:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
    return path


def _tensor_bytes(value) -> int:
    """Bytes of the tensors in a (nested) checkpoint payload."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(_tensor_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_tensor_bytes(v) for v in value)
    return 0


def load_checkpoint(path: str | os.PathLike, what: str = "checkpoint") -> dict[str, Any]:
    """Load a ccli checkpoint on CPU, or raise BadInput naming the file and the problem."""
    import torch

    path = Path(path)
    label = f"{what} {path}"
    if not path.exists():
        raise BadInput(f"{label} does not exist.")
    if path.is_dir():
        raise BadInput(f"{label} is a directory, not a checkpoint file.")
    if path.stat().st_size == 0:
        raise BadInput(f"{label} is empty.")
    if not os.access(path, os.R_OK):
        raise BadInput(f"{label} is not readable (permission denied).")
    from ccli.store.cache import check_zip

    damage = check_zip(path)  # every member's CRC-32: flipped bytes are caught here, not trusted
    if damage and damage[0].startswith("not a"):
        raise BadInput(f"{label} cannot be read (truncated or not a ccli checkpoint).")
    if damage:
        raise BadInput(f"{label} is damaged: {damage[0]}.")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - garbage bytes fail in many ways (IndexError, KeyError, …)
        raise BadInput(f"{label} cannot be read (truncated, damaged or not a ccli checkpoint).") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BadInput(f"{label} is not a ccli checkpoint.")
    version = data.get("version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise BadInput(f"{label} has checkpoint version {version!r}, which is not an integer (damaged).")
    if version > VERSION:
        raise BadInput(f"{label} has checkpoint version {version}, newer than this ccli reads ({VERSION}).")
    return data


def file_identity(path: str | os.PathLike) -> str:
    """Content hash of a file (the checkpoint's identity in downstream cache keys)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()[:24]
