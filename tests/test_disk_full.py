"""A full disk (issue 16): exit 1, one sentence with the path and "no space left", no partial
file, the previous file intact — both when the size is known in advance (refused before
writing) and when it is not (the failing write is caught: here the free-space check is
switched off, so HDF5 and torch.save really hit the full filesystem).

Runs on a small tmpfs; skipped where mounting is not allowed. Every write runs in a
subprocess, so a crash inside h5py (the old behaviour: exit 139) fails the test instead of
killing pytest.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

TMPFS_BYTES = 256 * 1024


@pytest.fixture
def full_disk(tmp_path):
    """A 256 KiB tmpfs mounted on tmp_path/disk (skip where mount is not permitted)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or 'mount failed'}); needs root/CAP_SYS_ADMIN")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def _features(path: Path, n: int, d: int) -> Path:
    from ccli.store import ArtifactWriter

    rng = np.random.default_rng(0)
    with ArtifactWriter(path, "features", f"{n:024d}", {"n": n}) as w:
        w.write("features", rng.normal(size=(n, d)).astype(np.float32))
        w.write("labels", (np.arange(n) % 4).astype(np.int64))
        w.write("index", np.arange(n, dtype=np.int64))
    return path


PRELUDE = """
import sys
{patch}
from ccli.cli.main import run
run(sys.argv[1:])
"""
NO_CHECK = "import ccli.store.space as space\nspace.ensure_space = lambda *a, **k: None"


def _ccli(args, check_space: bool = True, env_extra=None):
    code = PRELUDE.format(patch="" if check_space else NO_CHECK)
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=300)


def _assert_no_space(proc, path: Path) -> None:
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("searching")]
    errors = [ln for ln in lines if ln.startswith("ccli: error:")]
    assert len(errors) == 1 and "no space left" in errors[0] and str(path) in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr and "__dealloc__" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("check_space", [True, False], ids=["size-known", "write-fails"])
def test_a_full_disk_is_one_sentence_and_leaves_the_previous_artifact_intact(full_disk, tmp_path, check_space):
    from ccli.store import verify_artifact

    big = _features(tmp_path / "big.h5", 1200, 8)  # neighbours: 1200 × 40 × 8 bytes ≈ 375 KiB > 256 KiB
    small = _features(tmp_path / "small.h5", 50, 8)
    target = full_disk / "nb.h5"
    ok = _ccli(["neighbors", small, "-k", "3", "--backend", "torch", "-o", target, "-q", "--cache-dir", tmp_path / "c"])
    assert ok.returncode == 0, ok.stderr
    before = target.read_bytes()
    proc = _ccli(["neighbors", big, "-k", "40", "--backend", "torch", "-o", target, "--force", "-q",
                  "--cache-dir", tmp_path / "c"], check_space=check_space)
    _assert_no_space(proc, target)
    assert sorted(os.listdir(full_disk)) == ["nb.h5"]  # no temp, no lock
    assert target.read_bytes() == before and verify_artifact(target) == []


@pytest.mark.parametrize("check_space", [True, False], ids=["size-known", "write-fails"])
def test_a_full_disk_under_the_cache_is_one_sentence(full_disk, tmp_path, check_space):
    big = _features(tmp_path / "big.h5", 1200, 8)
    proc = _ccli(["neighbors", big, "-k", "40", "--backend", "torch", "--cache-dir", full_disk / "cache"],
                 check_space=check_space)
    _assert_no_space(proc, full_disk / "cache" / "neighbors")
    leftovers = [str(p) for p in (full_disk / "cache").rglob("*") if p.is_file()]
    assert leftovers == []


@pytest.mark.parametrize("check_space", [True, False], ids=["size-known", "write-fails"])
def test_a_checkpoint_on_a_full_disk_is_one_sentence_and_keeps_the_previous_one(full_disk, check_space):
    script = f"""
import sys, torch
{'' if check_space else NO_CHECK}
from ccli.engine.checkpoint import save_atomic, load_checkpoint
from ccli.errors import CcliError
path = sys.argv[1]
save_atomic({{"model": {{"w": torch.zeros(1000)}}, "epoch": 1}}, path)
try:
    save_atomic({{"model": {{"w": torch.ones(400_000)}}, "epoch": 2}}, path)  # 1.6 MB > 256 KiB
except CcliError as exc:
    print(exc)
    print(load_checkpoint(path)["epoch"])
    sys.exit(1)
"""
    target = full_disk / "checkpoint.pt"
    proc = subprocess.run([sys.executable, "-c", script, str(target)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    message, epoch = proc.stdout.strip().splitlines()
    assert "no space left" in message and str(target) in message
    assert epoch == "1"  # the previous checkpoint is intact
    assert sorted(os.listdir(full_disk)) == ["checkpoint.pt"]


def test_free_space_is_checked_before_writing(tmp_path, monkeypatch):
    """Without a tmpfs: a writer of known size refuses when the filesystem reports too little room."""
    import shutil

    from ccli.errors import CcliError
    from ccli.store import ArtifactWriter

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=100_000))
    with pytest.raises(CcliError, match=r"no space left on device for .*x\.h5: it needs about"):
        with ArtifactWriter(tmp_path / "x.h5", "features", "k" * 24, {}) as w:
            w.create("features", (1000, 64), np.float32)
    assert os.listdir(tmp_path) == []
