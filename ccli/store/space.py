"""Free space: refuse a write that cannot fit before it starts, and name a full disk in one sentence.

A full filesystem in the middle of an HDF5 or torch.save write otherwise ends in a crash
inside the library (h5py can even segfault while closing a file whose flush failed), so
writers of known size ask `ensure_space` first, and every write failure goes through
`write_error`, which says "no space left" with the path when that is the cause.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from ccli.errors import CcliError

# Slack kept free beyond a write's own size (HDF5 metadata, chunk indexes): a fixed part plus 1%.
MARGIN_BYTES = 64 * 2**10


def human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def free_bytes(path: str | os.PathLike) -> int | None:
    """Bytes available to this user on the filesystem holding `path` (its nearest existing parent)."""
    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def ensure_space(path: str | os.PathLike, nbytes: int, already: str | os.PathLike | None = None) -> None:
    """Raise CcliError when writing `nbytes` more to `path` (minus what `already` holds) cannot fit."""
    path = Path(path)
    free = free_bytes(path.parent)
    if free is None:
        return
    written = 0
    if already is not None:
        try:
            written = os.stat(already).st_size
        except OSError:
            written = 0
    needed = max(0, int(nbytes) - written) + MARGIN_BYTES + int(nbytes) // 100
    if free < needed:
        raise CcliError(f"no space left on device for {path}: it needs about {human(needed)} and "
                        f"{path.parent} has {human(free)} free.")


def is_no_space(exc: BaseException) -> bool:
    """Whether `exc` (OSError, h5py's OSError, torch's RuntimeError) comes from a full filesystem."""
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(exc)
        if "No space left" in text or "errno = 28" in text or "Disk quota exceeded" in text:
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def write_error(path: str | os.PathLike, exc: BaseException) -> CcliError:
    """One sentence for a failed write of `path`: "no space left" when the disk is full."""
    if isinstance(exc, CcliError):
        return exc
    if is_no_space(exc):
        free = free_bytes(Path(path).parent)
        where = f" ({human(free)} free)" if free is not None else ""
        return CcliError(f"cannot write {path}: no space left on device{where}.")
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return CcliError(f"cannot write {path}: {reason}.")
