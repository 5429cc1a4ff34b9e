"""The on-disk cache: where artifacts live, per-key locks, get-or-compute, listing, verify and gc.

Layout: `<cache>/<kind>/<key>.h5`, with a hidden `.<key>.h5.lock` beside it while someone
computes it (removed when they are done). Two processes asking for the same key serialise on
the lock; the second finds the first's finished file when it gets the lock and returns it
instead of recomputing. A cache hit is verified (every checksum) before it is served; a
damaged entry is reported and recomputed.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from ccli.errors import BadInput
from ccli.store.reader import open_artifact
from ccli.store.verify import is_valid_artifact, verify_artifact
from ccli.store.schema import KINDS

CACHE_ENV = "CCLI_CACHE"

# Leftovers of killed writers: `.NAME.tmp-PID-HEX` (artifacts, checkpoints), `.NAME.tmp-PID`, `.NAME.tmp`.
TEMP_PATTERN = re.compile(r"^\..+\.tmp(?:-(\d+)(?:-[0-9a-f]+)?)?$")
LOCK_SUFFIX = ".lock"


def cache_root(override: str | os.PathLike | None = None, *, must_exist: bool = False) -> Path:
    """--cache-dir, else $CCLI_CACHE, else $XDG_CACHE_HOME/ccli, else ~/.cache/ccli.

    A cache folder that is a file is refused; with `must_exist` (the commands that only read
    the cache), so is a folder named by `override` (--cache-dir) that does not exist.
    """
    explicit = bool(override)
    if override:
        root = Path(override).expanduser()
    elif os.environ.get(CACHE_ENV):
        root = Path(os.environ[CACHE_ENV]).expanduser()
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = Path(base) / "ccli"
    if root.exists() and not root.is_dir():
        raise BadInput(f"--cache-dir {root} is a file, not a cache folder.")
    if must_exist and explicit and not root.is_dir():
        raise BadInput(f"--cache-dir {root} does not exist.")
    return root


def cache_path(root: Path, kind: str, key: str) -> Path:
    return Path(root) / kind / f"{key}.h5"


def lock_path_for(path: Path) -> Path:
    """The hidden lock file of `path`: `.NAME.lock` in the same folder."""
    path = Path(path)
    return path.with_name(f".{path.name.lstrip('.')}{LOCK_SUFFIX}")


def _missing_parents(folder: Path) -> list[Path]:
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


@contextmanager
def key_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock for the artifact (or run) at `path`; blocks until the holder is done.

    The lock file is hidden and removed on release. Removing it is safe because a waiter,
    once it holds the lock, checks that the file it locked is still the one at the lock's
    path, and starts over when it is not. Folders made only for the lock are removed again
    when nothing was written into them (a refused command leaves no trace).
    """
    path = Path(path)
    created = _missing_parents(path.parent)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = lock_path_for(path)
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            same = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the previous holder removed this file after we opened it: lock the new one
    try:
        yield
    finally:
        try:
            os.unlink(lock_path)
        except FileNotFoundError:
            pass
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        for folder in created:  # innermost first
            try:
                folder.rmdir()
            except OSError:
                break


def is_locked(lock_path: Path) -> bool:
    """Whether a live process holds the lock file (a kill -9 releases it with the process)."""
    try:
        fd = os.open(lock_path, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        return exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def check_overwrite(path: Path, kind: str, key: str, option: str = "--out") -> None:
    """The one overwrite rule: an existing output of another kind or key is refused (BadInput).

    The same kind and key is the same result (a cache hit, or recomputed if damaged); the
    caller passes `force` to skip this check and replace whatever is there.
    """
    path = Path(path)
    if not path.exists():
        return
    try:
        with open_artifact(path) as art:
            found_kind, found_key = art.kind, art.key
    except BadInput:
        raise BadInput(f"{option} {path} already exists and is not a ccli artifact; pick another path "
                       "(or --force to replace it).") from None
    if found_kind != kind:
        raise BadInput(f"{option} {path} already holds a {found_kind} artifact; pick another path "
                       f"(or --force to replace it with the {kind} artifact).")
    if found_key != key:
        raise BadInput(f"{option} {path} already holds a {kind} artifact of other inputs or settings "
                       f"(key {found_key[:12]}…); pick another path (or --force to replace it).")


def output_path(out: str | os.PathLike | None, root: Path, kind: str, key: str, *, force: bool = False) -> Path:
    """Where a command's artifact goes: `-o/--out` if given, else the cache slot for its key.

    An existing `--out` file of another kind or key is refused unless `force` (check_overwrite).
    """
    if out:
        path = Path(out).expanduser()
        if path.is_dir():
            raise BadInput(f"--out {path} is a directory; give a file name such as {path / (kind + '.h5')}.")
        if not force:
            check_overwrite(path, kind, key)
        return path
    return cache_path(root, kind, key)


def get_or_compute(path: Path, kind: str, key: str, build: Callable[[Path], None], *, force: bool = False) -> bool:
    """Make sure a valid artifact with `key` exists at `path`; return True on a cache hit.

    `build(path)` must write the artifact atomically (ArtifactWriter does). It runs under the
    key's lock, so concurrent callers compute it once.
    """
    from ccli import log

    if not force and is_valid_artifact(path, kind, key) and not verify_artifact(path):
        mark_used(path)
        return True
    with key_lock(path):
        if not force and is_valid_artifact(path, kind, key):
            problems = verify_artifact(path)
            if not problems:
                mark_used(path)
                return True  # another process finished it while we waited for the lock
            log.warn(f"{path} is damaged ({problems[0]}); recomputing it.")
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
            except (BadInput, KeyError, OSError, ValueError) as exc:
                entries.append(CacheEntry(path, k, path.stem, size, "", "", False, str(exc)))
    entries.sort(key=lambda e: e.created, reverse=True)
    return entries


def _writer_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def leftovers(root: Path, *, temp_grace_s: float = 3600.0) -> list[tuple[Path, str]]:
    """Temp files of dead writers and unheld lock files anywhere under the cache.

    A temp file names its writer's pid (`.NAME.tmp-PID-…`): it is a leftover as soon as that
    process is gone, or, whatever the pid, once it is older than `temp_grace_s` (a pid may
    be reused). A temp without a pid is a leftover when no lock in its folder is held.
    A lock file nobody holds is what a killed process leaves behind.
    """
    now = time.time()
    found: list[tuple[Path, str]] = []
    root = Path(root)
    if not root.is_dir():
        return found
    for dirpath, _dirs, files in os.walk(root):
        folder = Path(dirpath)
        busy = None
        for name in files:
            path = folder / name
            if name.endswith(LOCK_SUFFIX):
                if not is_locked(path):
                    found.append((path, "stale lock"))
                continue
            match = TEMP_PATTERN.match(name)
            if not match:
                continue
            try:
                age = now - path.stat().st_mtime
            except FileNotFoundError:
                continue
            pid = match.group(1)
            if pid is not None:
                stale = not _writer_alive(int(pid)) or age > temp_grace_s
            else:
                if busy is None:
                    busy = any(is_locked(p) for p in folder.glob(f"*{LOCK_SUFFIX}"))
                stale = not busy or age > temp_grace_s
            if stale:
                found.append((path, "unfinished write"))
    return found


def check_zip(path: Path) -> list[str]:
    """Problems of a checkpoint file (torch.save's zip container): every member's CRC-32 is checked."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        return [f"not a readable checkpoint ({type(exc).__name__}: {exc})"]
    except Exception as exc:  # noqa: BLE001 - a damaged zip directory fails in many ways
        return [f"not a readable checkpoint ({type(exc).__name__})"]
    if bad is not None:
        return [f"member '{bad}' does not match its CRC-32 checksum"]
    if not any(name.endswith("data.pkl") for name in names):
        return ["not a torch checkpoint (no data.pkl)"]
    return []


def run_folders(root: Path) -> list[Path]:
    runs = Path(root) / "runs"
    return sorted(p for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []


def verify_run_folder(folder: Path) -> dict[str, list[str]]:
    """Problems per file of a run folder (`ccli train` / `ccli pretrain`): marker, config, metrics,
    checkpoints, predictions. Temp and lock files are leftovers, not problems."""
    import yaml

    problems: dict[str, list[str]] = {}
    for path in sorted(folder.iterdir()):
        name = path.name
        if not path.is_file() or name.endswith(LOCK_SUFFIX) or TEMP_PATTERN.match(name):
            continue
        try:
            if name.endswith(".pt"):
                found = check_zip(path)
                if found:
                    problems[str(path)] = found
            elif name.endswith(".h5"):
                found = verify_artifact(path)
                if found:
                    problems[str(path)] = found
            elif name.endswith("run.json") or name == "scores.json":
                json.loads(path.read_text())
            elif name.endswith(".yaml"):
                yaml.safe_load(path.read_text())
            elif name.endswith(".jsonl"):
                lines = path.read_text().splitlines()
                for number, line in enumerate(lines, 1):
                    if line.strip():
                        try:
                            json.loads(line)
                        except json.JSONDecodeError:
                            # A last line cut short by a kill is harmless: the checkpoint holds the epoch.
                            if number != len(lines):
                                raise
        except BadInput as exc:
            problems[str(path)] = [str(exc)]
        except (OSError, ValueError, yaml.YAMLError, UnicodeDecodeError) as exc:
            problems[str(path)] = [f"cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"]
    return problems


@dataclass
class CacheReport:
    checked: int = 0
    damaged: dict[str, list[str]] = field(default_factory=dict)
    leftovers: list[tuple[str, str]] = field(default_factory=list)


def verify_cache(root: Path, kind: str | None = None) -> CacheReport:
    """Everything under the cache: every artifact's checksums, every run folder's files, and the
    leftovers (temps, stale locks) that `gc` would remove."""
    report = CacheReport()
    for k in [kind] if kind else list(KINDS):
        folder = Path(root) / k
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.h5")):
            report.checked += 1
            problems = verify_artifact(path)
            if problems:
                report.damaged[str(path)] = problems
    if kind is None:
        for folder in run_folders(root):
            report.checked += 1
            report.damaged.update(verify_run_folder(folder))
    report.leftovers = [(str(p), why) for p, why in leftovers(root)]
    return report


def verify_paths(root: Path, refs: list[str]) -> CacheReport:
    """`ccli cache verify REF…`: artifacts, checkpoints or run folders named by path or key prefix."""
    report = CacheReport()
    for ref in refs:
        path = Path(ref).expanduser()
        report.checked += 1
        if path.is_dir():
            report.damaged.update(verify_run_folder(path))
            report.leftovers.extend((str(p), why) for p, why in leftovers(path))
            continue
        if path.suffix == ".pt" and path.exists():
            found = check_zip(path)
            if found:
                report.damaged[str(path)] = found
            continue
        path = find_entry(root, ref)
        problems = verify_artifact(path)
        if problems:
            report.damaged[str(path)] = problems
    return report


def plan_gc(
    root: Path,
    *,
    kind: str | None = None,
    older_than_days: float | None = None,
    max_bytes: int | None = None,
    temp_grace_s: float = 3600.0,
) -> list[tuple[Path, str]]:
    """What `ccli cache gc` removes, with the reason for each file.

    Always: temp files of killed writers (a live writer's are never touched), unheld lock
    files, and damaged artifacts (every checksum is read: they would only be recomputed
    anyway). Optionally: artifacts unused for `older_than_days`, then the least recently
    used ones until the cache fits in `max_bytes`.
    """
    now = time.time()
    doomed: list[tuple[Path, str]] = []
    for path, why in leftovers(root, temp_grace_s=temp_grace_s):
        if kind is None or path.parent.name == kind:
            doomed.append((path, why))
    entries = list_entries(root, kind)
    keep = []
    for entry in entries:
        if not entry.ok or verify_artifact(entry.path):
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


def remove(path: Path) -> None:
    """Delete one file `gc` chose; a lock file only while holding it, so no live lock is broken."""
    path = Path(path)
    if not path.name.endswith(LOCK_SUFFIX):
        path.unlink(missing_ok=True)
        return
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return  # someone took it meanwhile: not stale any more
    try:
        if os.stat(path).st_ino == os.fstat(fd).st_ino:
            os.unlink(path)
    except FileNotFoundError:
        pass
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


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
