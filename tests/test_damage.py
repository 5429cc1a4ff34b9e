"""Damaged files are never trusted (issue 16): flipped bytes in every artifact kind and in a
checkpoint are either detected or provably harmless; consumers refuse damaged inputs; a
damaged cache entry is reported and recomputed; verify and gc cover everything under the cache.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

N, D = 120, 16


def content(path: Path) -> dict | None:
    """Every dataset's bytes and every attribute of the file, read raw with h5py (None if unreadable)."""
    out: dict = {}
    try:
        with h5py.File(path, "r") as h5:
            def visit(name, obj):
                attrs = {k: np.asarray(obj.attrs[k]).tobytes() for k in obj.attrs.keys()}
                out[name] = (np.asarray(obj[()]).tobytes() if isinstance(obj, h5py.Dataset) else None, attrs)

            out["/"] = (None, {k: np.asarray(h5.attrs[k]).tobytes() for k in h5.attrs.keys()})
            h5.visititems(visit)
    except Exception:  # noqa: BLE001 - a damaged file fails in h5py in many ways
        return None
    return out


def detected(path: Path, kind: str) -> bool:
    """Whether ccli refuses the file: `verify` reports it, or opening and reading every dataset fails."""
    from ccli.errors import BadInput
    from ccli.store import open_artifact, verify_artifact
    from ccli.store.digests import _all_datasets

    if verify_artifact(path):
        return True
    try:
        with open_artifact(path, kind) as art:
            for name in _all_datasets(art.h5):
                art.read(name)
    except BadInput:
        return True
    return False


def flip_trials(original: Path, kind: str, trials: int, seed: int, work: Path) -> dict[str, int]:
    """Flip one random byte `trials` times; count detected, harmless (content unchanged) and silent ones."""
    rng = np.random.default_rng(seed)
    size = original.stat().st_size
    reference = content(original)
    counts = {"flipped": 0, "detected": 0, "harmless": 0, "silent": 0}
    target = work / f"flipped-{kind}.h5"
    for _ in range(trials):
        shutil.copyfile(original, target)
        offset = int(rng.integers(0, size))
        with open(target, "r+b") as fh:
            fh.seek(offset)
            byte = fh.read(1)[0]
            fh.seek(offset)
            fh.write(bytes([byte ^ (1 << int(rng.integers(0, 8)))]))
        counts["flipped"] += 1
        if detected(target, kind):
            counts["detected"] += 1
        elif content(target) == reference:
            counts["harmless"] += 1  # padding, free space or a field nobody reads
        else:
            counts["silent"] += 1
    return counts


def _write_features(path: Path, seed: int = 0) -> Path:
    from ccli.store import ArtifactWriter

    rng = np.random.default_rng(seed)
    labels = np.arange(N) % 5
    with ArtifactWriter(path, "features", "a" * 24, {"made": "by hand"}) as w:
        w.write("features", (rng.normal(size=(N, D)) + labels[:, None]).astype(np.float32))
        w.write("labels", labels.astype(np.int64))
        w.write("index", np.arange(N, dtype=np.int64))
    return path


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    from ccli.engine.checkpoint import save_atomic
    from ccli.graph.build import build_knn_graph
    from ccli.neighbors.build import compute_neighbors
    from ccli.neighbors.config import NeighborsConfig
    from ccli.store import ArtifactWriter

    import torch

    root = tmp_path_factory.mktemp("damage")
    cache = root / "cache"
    paths = {"features": _write_features(root / "f.h5")}
    paths["neighbors"] = compute_neighbors(paths["features"], NeighborsConfig(k=6, backend="torch"),
                                           out=root / "nb.h5", cache_dir=cache).path
    paths["graph"] = build_knn_graph(paths["neighbors"], 4, out=root / "g.h5", cache_dir=cache).path
    paths["predictions"] = root / "p.h5"
    with ArtifactWriter(paths["predictions"], "predictions", "b" * 24, {"method": "by hand"}) as w:
        w.write("labels", np.arange(N, dtype=np.int64) % 5)
        w.write("index", np.arange(N, dtype=np.int64))
        w.write("probs", np.full((N, 5), 0.2, dtype=np.float32))
    torch.manual_seed(0)
    paths["checkpoint"] = save_atomic({"model": torch.nn.Linear(16, 8).state_dict(), "epoch": 1}, root / "c.pt")
    return root, paths


@pytest.mark.parametrize("kind", ["features", "neighbors", "graph", "predictions"])
def test_flipped_bytes_are_detected_or_harmless(kind, artifacts, tmp_path):
    _, paths = artifacts
    counts = flip_trials(paths[kind], kind, trials=40, seed=16, work=tmp_path)
    assert counts["silent"] == 0, counts
    assert counts["detected"] > 0, counts


def test_flipped_bytes_in_a_checkpoint_are_detected(artifacts, tmp_path):
    from ccli.engine.checkpoint import load_checkpoint
    from ccli.errors import BadInput

    import torch

    _, paths = artifacts
    original = load_checkpoint(paths["checkpoint"])
    data = paths["checkpoint"].read_bytes()
    rng = np.random.default_rng(1)
    silent = 0
    for _ in range(40):
        offset = int(rng.integers(0, len(data)))
        damaged = bytearray(data)
        damaged[offset] ^= 1 << int(rng.integers(0, 8))
        target = tmp_path / "flipped.pt"
        target.write_bytes(bytes(damaged))
        try:
            state = load_checkpoint(target)
        except BadInput:
            continue
        same = all(torch.equal(state["model"][k], original["model"][k]) for k in original["model"]) \
            and state["epoch"] == original["epoch"]
        silent += not same
    assert silent == 0


def _flip_in_dataset(path: Path, name: str) -> None:
    """Flip one byte inside the stored bytes of dataset `name` (its first chunk, or contiguous data)."""
    with h5py.File(path, "r") as h5:
        dset = h5[name]
        offset = dset.id.get_offset()
        if offset is None:
            offset = dset.id.get_chunk_info(0).byte_offset
    with open(path, "r+b") as fh:
        fh.seek(offset + 5)
        byte = fh.read(1)[0]
        fh.seek(offset + 5)
        fh.write(bytes([byte ^ 0x10]))


def _ccli(capsys, *args):
    from ccli.cli.main import run

    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        run([str(a) for a in args])
    captured = capsys.readouterr()
    return exc.value.code, captured.out, captured.err


def test_consumers_refuse_a_damaged_input(artifacts, tmp_path, capsys, monkeypatch):
    _, paths = artifacts
    monkeypatch.setenv("CCLI_CACHE", str(tmp_path / "cache"))
    features = tmp_path / "f.h5"
    shutil.copyfile(paths["features"], features)
    _flip_in_dataset(features, "features")
    neighbors = tmp_path / "nb.h5"
    shutil.copyfile(paths["neighbors"], neighbors)
    _flip_in_dataset(neighbors, "indices")
    for args, name in [(["neighbors", features, "-k", "3", "-o", tmp_path / "out.h5"], "f.h5"),
                       (["graph", features, "--self-expressive", "-o", tmp_path / "out.h5"], "f.h5"),
                       (["graph", neighbors, "--knn", "3", "-o", tmp_path / "out.h5"], "nb.h5"),
                       (["train", "--method", "kmeans", "--features", features, "-o", tmp_path / "run"], "f.h5")]:
        code, out, err = _ccli(capsys, *args)
        assert code == 2, (args, err)
        assert "damaged" in err and name in err and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "out.h5").exists() and not (tmp_path / "run").exists()


def test_a_damaged_cache_entry_is_reported_and_recomputed(artifacts, tmp_path, capsys):
    _, paths = artifacts
    cache = tmp_path / "cache"
    code, out, _ = _ccli(capsys, "neighbors", paths["features"], "-k", "4", "--backend", "torch", "--cache-dir", cache, "-q")
    assert code == 0
    entry = Path(out.strip())
    good = content(entry)
    _flip_in_dataset(entry, "indices")
    assert content(entry) != good
    code, out2, err = _ccli(capsys, "neighbors", paths["features"], "-k", "4", "--backend", "torch", "--cache-dir", cache)
    assert code == 0, err
    assert Path(out2.strip()) == entry
    assert "damaged" in err and "recomputing" in err, err
    assert content(entry) == {k: v for k, v in good.items()} or _same_data(entry, good)
    code, _, err = _ccli(capsys, "cache", "verify", "--cache-dir", cache)
    assert code == 0, err


def _same_data(path: Path, reference: dict) -> bool:
    """Same datasets (a recomputed file differs only in its `created` time and attribute digest)."""
    now = content(path)
    return {k: v[0] for k, v in now.items()} == {k: v[0] for k, v in reference.items()}


def test_verify_and_gc_cover_damage_temps_locks_and_run_folders(artifacts, tmp_path, capsys):
    from ccli.store.cache import key_lock

    _, paths = artifacts
    cache = tmp_path / "cache"
    (cache / "features").mkdir(parents=True)
    good = cache / "features" / ("a" * 24 + ".h5")
    shutil.copyfile(paths["features"], good)
    bad = cache / "graph" / "damaged.h5"
    bad.parent.mkdir()
    shutil.copyfile(paths["graph"], bad)
    _flip_in_dataset(bad, "data")
    # Leftovers of a killed writer (its pid is gone) and of a killed lock holder.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    temp = cache / "features" / f".x.h5.tmp-{pid}-0badc0de"
    temp.write_bytes(b"half an artifact")
    stale_lock = cache / "features" / ".y.h5.lock"
    stale_lock.write_text("")
    run_dir = cache / "runs" / "cc-0123"
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"command": "train", "key": "0123"}))
    (run_dir / "checkpoint-cluster.pt").write_bytes(b"PK\x03\x04 not really a checkpoint")
    (run_dir / f".checkpoint-cluster.pt.tmp-{pid}-00000000").write_bytes(b"partial")

    code, out, err = _ccli(capsys, "cache", "verify", "--cache-dir", cache, "--json")
    assert code == 1
    report = json.loads(out)
    assert set(report["damaged"]) == {str(bad), str(run_dir / "checkpoint-cluster.pt")}
    assert {item["path"] for item in report["leftovers"]} == {
        str(temp), str(stale_lock), str(run_dir / f".checkpoint-cluster.pt.tmp-{pid}-00000000")}

    live = cache / "features" / "live.h5"
    with key_lock(live):  # a live holder's lock is never removed
        code, out, err = _ccli(capsys, "cache", "gc", "--cache-dir", cache)
        assert code == 0, err
        assert (cache / "features" / ".live.h5.lock").exists()
    removed = set(out.split())
    assert {str(bad), str(temp), str(stale_lock), str(run_dir / f".checkpoint-cluster.pt.tmp-{pid}-00000000")} <= removed
    assert good.exists() and not bad.exists() and not temp.exists() and not stale_lock.exists()
    assert not (cache / "features" / ".live.h5.lock").exists()  # released and removed by its holder


def test_cache_info_reads_every_artifact_kind(artifacts, capsys):
    _, paths = artifacts
    for kind in ("features", "neighbors", "graph", "predictions"):
        code, out, err = _ccli(capsys, "cache", "info", paths[kind], "--json")
        assert code == 0, err
        assert json.loads(out)["attrs"]["kind"] == kind
    code, out, _ = _ccli(capsys, "cache", "info", paths["graph"], "--json")
    assert json.loads(out)["attrs"]["shape"] == [N, N]


def test_inconsistent_lengths_are_refused_before_any_output(tmp_path, capsys):
    path = _write_features(tmp_path / "f.h5")
    with h5py.File(path, "r+") as h5:
        del h5["index"]
        h5["index"] = np.arange(N - 2)
    code, _, err = _ccli(capsys, "neighbors", path, "-k", "3", "-o", tmp_path / "nb.h5")
    assert code == 2 and "disagree" in err and "'index' 118" in err, err
    assert not (tmp_path / "nb.h5").exists()
    assert os.listdir(tmp_path) == ["f.h5"]


@pytest.mark.parametrize("kind", ["features", "neighbors", "graph"])
def test_one_overwrite_rule_for_every_command(kind, artifacts, tmp_path):
    """An existing --out of another kind or key (or not an artifact) is refused unless --force;
    the same kind and key is the same result. embed, neighbors and graph all go through output_path."""
    from ccli.errors import BadInput
    from ccli.store import open_artifact, output_path

    _, paths = artifacts
    root = tmp_path / "cache"
    for other in ("features", "neighbors", "graph", "predictions"):
        target = tmp_path / f"{other}.h5"
        shutil.copyfile(paths[other], target)
        with open_artifact(target) as art:
            key = art.key
        if other == kind:
            assert output_path(target, root, kind, key) == target  # same result: allowed
            with pytest.raises(BadInput, match="of other inputs or settings"):
                output_path(target, root, kind, "0" * 24)
        else:
            with pytest.raises(BadInput, match=f"already holds a {other} artifact"):
                output_path(target, root, kind, key)
        assert output_path(target, root, kind, "0" * 24, force=True) == target
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    with pytest.raises(BadInput, match="is not a ccli artifact"):
        output_path(notes, root, kind, "0" * 24)
    assert notes.read_text() == "mine"
