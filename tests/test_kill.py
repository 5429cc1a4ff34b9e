"""kill -9 at random points (issue 16): pretrain, embed, neighbors, graph and train on tiny data.

Each command is first run uninterrupted in a reference cache. Then, in a second cache, it is
started and SIGKILLed at random moments (uniform over 10–80 % of its reference duration; for pretrain
and train one kill lands just after the first epoch's checkpoint, so the re-run resumes; the random
kills run with --force, so none is a quick cache hit),
and finally re-run to completion. Afterwards `ccli cache verify` passes, `ccli cache gc`
leaves no temp or lock file anywhere under the cache, every re-run completed, and each
command's final result is bit-identical to the uninterrupted one (CPU).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

pytestmark = pytest.mark.slow

CCLI = [sys.executable, "-c", "from ccli.cli.main import run; run()"]
KILLS = {"pretrain": 7, "embed": 5, "neighbors": 5, "graph": 4, "train": 5}


def _env(cache: Path) -> dict:
    return {**os.environ, "CCLI_CACHE": str(cache), "OMP_NUM_THREADS": "1"}


def _run(args, cache: Path) -> tuple[str, float]:
    started = time.perf_counter()
    proc = subprocess.run([*CCLI, *map(str, args)], capture_output=True, text=True, env=_env(cache), timeout=900)
    assert proc.returncode == 0, (args, proc.stderr)
    return proc.stdout.strip().splitlines()[-1], time.perf_counter() - started


def _kill(args, cache: Path, delay: float | None = None, when=None) -> bool:
    """Start the command and SIGKILL it after `delay` seconds or once `when()` holds; True if it was killed."""
    proc = subprocess.Popen([*CCLI, *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=_env(cache))
    deadline = time.perf_counter() + (delay if delay is not None else 900)
    while proc.poll() is None and time.perf_counter() < deadline:
        if when is not None and when():
            break
        time.sleep(0.02)
    alive = proc.poll() is None
    if alive:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return alive


def _datasets(path: Path) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    with h5py.File(path, "r") as h5:
        h5.visititems(lambda name, obj: out.__setitem__(name, obj[()].tobytes()) if isinstance(obj, h5py.Dataset) else None)
    return out


def _weights(path: Path) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def _same_weights(a: Path, b: Path) -> bool:
    import torch

    wa, wb = _weights(a), _weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    sys.path.insert(0, str(Path(__file__).parent))
    from fixtures_data import write_npz

    root = tmp_path_factory.mktemp("kill")
    write_npz(root / "d.npz", n=256, seed=3)
    return root


def test_kill_nine_at_random_points_loses_nothing_and_resumes_bit_identically(data):
    from ccli.store.cache import LOCK_SUFFIX, TEMP_PATTERN

    rng = np.random.default_rng(16)
    ref, cache = data / "ref", data / "cache"
    spec = f"npz:{data / 'd.npz'}"
    pretrain = ["pretrain", "--data", spec, "--preset", "digits", "--epochs", "4", "--batch-size", "64", "-q"]

    # The uninterrupted reference chain, and how long each step takes on this machine.
    ckpt_ref, t_pre = _run(pretrain, ref)
    feats_ref, t_emb = _run(["embed", ckpt_ref, "-q"], ref)
    nb_ref, t_nb = _run(["neighbors", feats_ref, "-k", "5", "--backend", "torch", "-q"], ref)
    graph_ref, t_gr = _run(["graph", nb_ref, "--knn", "3", "-q"], ref)
    train = ["train", "--method", "cc", "--data", spec, "--preset", "digits", "--epochs", "3", "--batch-size", "64", "-q"]
    pred_ref, t_tr = _run([*train, "--checkpoint", ckpt_ref], ref)

    survived = 0
    runs = cache / "runs"

    def first_checkpoint(prefix: str, name: str):
        """True once this attempt has written a checkpoint (one newer than its start)."""
        started = time.time()
        return lambda: runs.is_dir() and any(p.name == name and p.stat().st_mtime > started
                                             for p in runs.glob(f"{prefix}*/*"))

    # pretrain: random kills, then one just after the first epoch's checkpoint, then the resume.
    for _ in range(KILLS["pretrain"] - 1):
        survived += _kill([*pretrain, "--force"], cache, delay=float(rng.uniform(0.1, 0.8) * t_pre))
    survived += _kill(pretrain, cache, when=first_checkpoint("pretrain-", "checkpoint.pt"))
    ckpt, _ = _run(pretrain, cache)
    assert _same_weights(Path(ckpt), Path(ckpt_ref)), "resumed pretraining differs from the uninterrupted one"

    steps = [
        ("embed", ["embed", ckpt, "-q"], t_emb, feats_ref),
        ("neighbors", None, t_nb, nb_ref),
        ("graph", None, t_gr, graph_ref),
    ]
    previous = None
    for name, args, duration, reference in steps:
        if name == "neighbors":
            args = ["neighbors", previous, "-k", "5", "--backend", "torch", "-q"]
        elif name == "graph":
            args = ["graph", previous, "--knn", "3", "-q"]
        for _ in range(KILLS[name]):
            survived += _kill([*args, "--force"], cache, delay=float(rng.uniform(0.1, 0.8) * duration))
        previous, _ = _run(args, cache)
        assert _datasets(Path(previous)) == _datasets(Path(reference)), f"{name} after kills differs"

    for _ in range(KILLS["train"] - 1):
        survived += _kill([*train, "--checkpoint", ckpt, "--force"], cache, delay=float(rng.uniform(0.1, 0.8) * t_tr))
    survived += _kill([*train, "--checkpoint", ckpt], cache, when=first_checkpoint("cc-", "checkpoint-cluster.pt"))
    pred, _ = _run([*train, "--checkpoint", ckpt], cache)
    assert _datasets(Path(pred)) == _datasets(Path(pred_ref))
    assert _same_weights(Path(pred).parent / "checkpoint-cluster.pt", Path(pred_ref).parent / "checkpoint-cluster.pt")

    # At least 20 of the kills hit a live process (the others found it already finished).
    assert survived >= 20, survived

    leftover = [p for p in cache.rglob("*") if p.is_file() and (TEMP_PATTERN.match(p.name) or p.name.endswith(LOCK_SUFFIX))]
    verify = subprocess.run([*CCLI, "cache", "verify", "--cache-dir", str(cache)], capture_output=True, text=True,
                            env=_env(cache))
    assert verify.returncode == 0, verify.stderr
    gc = subprocess.run([*CCLI, "cache", "gc", "--cache-dir", str(cache)], capture_output=True, text=True,
                        env=_env(cache))
    assert gc.returncode == 0, gc.stderr
    left = [str(p) for p in cache.rglob("*") if p.is_file() and (TEMP_PATTERN.match(p.name) or p.name.endswith(LOCK_SUFFIX))]
    assert left == []
    print(f"kills: {survived} of {sum(KILLS.values())} hit a running command; {len(leftover)} temp/lock file(s) "
          "left by them were reported by verify as leftovers and removed by gc")
