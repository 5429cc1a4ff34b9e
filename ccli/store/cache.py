"""The on-disk cache: where artifacts live, per-key locks, get-or-compute, listing and gc.

Layout: `<cache>/<kind>/<key>.h5`, with `<key>.lock` beside it while someone computes it.
Two processes asking for the same key serialise on the lock; the second finds the first's
finished file when it gets the lock and returns it instead of recomputing.
"""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from ccli.errors import BadInput
from ccli.store.artifact import is_valid_artifact, open_artifact
from ccli.store.schema import KINDS

CACHE_ENV = "CCLI_CACHE"


def cache_root(override: str | os.PathLike | None = None) -> Path:
    """--cache-dir, else $CCLI_CACHE, else $XDG_CACHE_HOME/ccli, else ~/.cache/ccli."""
    if override:
        return Path(override).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ccli"


def cache_path(root: Path, kind: str, key: str) -> Path:
    return Path(root) / kind / f"{key}.h5"


@contextmanager
def key_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock for the artifact at `path` (blocks until the holder is done)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_name(path.name + ".lock")
    with open(lock_path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            # The lock file is left for the next user: deleting it here would let a waiter
            # hold a lock on an unlinked inode while a newcomer locks a fresh file.


def output_path(out: str | os.PathLike | None, root: Path, kind: str, key: str) -> Path:
    """Where a command's artifact goes: `-o/--out` if given, else the cache slot for its key."""
    if out:
        path = Path(out).expanduser()
        if path.is_dir():
            raise BadInput(f"--out {path} is a directory; give a file name such as {path / (kind + '.h5')}.")
        return path
    return cache_path(root, kind, key)


def get_or_compute(path: Path, kind: str, key: str, build: Callable[[Path], None], *, force: bool = False) -> bool:
    """Make sure a valid artifact with `key` exists at `path`; return True on a cache hit.

    `build(path)` must write the artifact atomically (ArtifactWriter does). It runs under the
    key's lock, so concurrent callers compute it once.
    """
    if not force and is_valid_artifact(path, kind, key):
        mark_used(path)
        return True
    with key_lock(path):
        if not force and is_valid_artifact(path, kind, key):
            mark_used(path)
            return True  # another process finished it while we waited for the lock
        build(path)
    return False


def mark_used(path: Path) -> None:
    """Record a use in the file's mtime, which `gc` reads as "last used".

    atime would be the natural field, but reading the file to list or verify it updates
    atime too (relatime), so only deliberate uses move mtime.
    """
    try:
        os.utime(path)
    except OSError:
        pass  # a read-only cache still serves hits


@dataclass
class CacheEntry:
    path: Path
    kind: str
    key: str
    size: int
    created: str
    shape: str
    ok: bool
    problem: str = ""


def list_entries(root: Path, kind: str | None = None) -> list[CacheEntry]:
    """Artifacts in the cache (newest first), with a one-line summary each."""
    entries: list[CacheEntry] = []
    kinds = [kind] if kind else list(KINDS)
    for k in kinds:
        folder = Path(root) / k
        if not folder.is_dir():
            continue
        for path in folder.glob("*.h5"):
            size = path.stat().st_size
            try:
                with open_artifact(path, k) as art:
                    main = {"features": "features", "neighbors": "indices", "graph": "indptr", "predictions": "labels"}[k]
                    shape = "×".join(str(s) for s in art.shape(main))
                    if k == "graph":  # N × N, not the CSR indptr's N + 1
                        n = art.shape("indptr")[0] - 1
                        shape = f"{n}×{n}"
                    entries.append(CacheEntry(path, k, art.key, size, art.created, shape, True))
            except BadInput as exc:
                entries.append(CacheEntry(path, k, path.stem, size, "", "", False, str(exc)))
    entries.sort(key=lambda e: e.created, reverse=True)
    return entries


def plan_gc(
    root: Path,
    *,
    kind: str | None = None,
    older_than_days: float | None = None,
    max_bytes: int | None = None,
    temp_grace_s: float = 3600.0,
) -> list[tuple[Path, str]]:
    """What `ccli cache gc` removes, with the reason for each file.

    Always: temp files of killed writers (older than an hour, so a live writer is never
    disturbed) and damaged artifacts (they would only be recomputed anyway). Optionally:
    artifacts unused for `older_than_days`, then the least recently used ones until the
    cache fits in `max_bytes`.
    """
    now = time.time()
    doomed: list[tuple[Path, str]] = []
    folders = [Path(root) / k for k in ([kind] if kind else KINDS)]
    for folder in folders:
        for path in folder.glob(".*.tmp-*"):
            if now - path.stat().st_mtime > temp_grace_s:
                doomed.append((path, "unfinished write"))
    entries = list_entries(root, kind)
    keep = []
    for entry in entries:
        if not entry.ok:
            doomed.append((entry.path, "damaged"))
            continue
        last_use = entry.path.stat().st_mtime
        if older_than_days is not None and now - last_use > older_than_days * 86400:
            doomed.append((entry.path, f"unused for {(now - last_use) / 86400:.1f} days"))
            continue
        keep.append((last_use, entry))
    if max_bytes is not None:
        keep.sort(key=lambda item: item[0])  # least recently used first
        total = sum(e.size for _, e in keep)
        for _, entry in keep:
            if total <= max_bytes:
                break
            doomed.append((entry.path, "over --max-size"))
            total -= entry.size
    return doomed


def find_entry(root: Path, ref: str) -> Path:
    """Resolve a path or a (prefix of a) cache key to an artifact file."""
    path = Path(ref).expanduser()
    if path.exists():
        return path
    matches = [e.path for e in list_entries(root) if e.key.startswith(ref) or e.path.stem.startswith(ref)]
    if not matches:
        raise BadInput(f"{ref} is neither a file nor a key in the cache {root}.")
    if len(matches) > 1:
        raise BadInput(f"key prefix {ref} is ambiguous: it matches {len(matches)} artifacts in {root}.")
    return matches[0]
