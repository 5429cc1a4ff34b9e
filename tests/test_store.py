"""The artifact store: atomic writes, schema checks, checksums, keys, locks, cache commands."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from ccli.errors import BadInput
from ccli.store import (
    ArtifactWriter,
    cache_path,
    content_key,
    get_or_compute,
    open_artifact,
    verify_artifact,
)
from ccli.store.cache import plan_gc
from tests.conftest import assert_bad_input


def write_features(path, n=50, d=8, key=None, seed=0, block=16):
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(n, d)).astype(np.float32)
    config = {"d": d, "seed": seed}
    key = key or content_key("features", config, ["dataset-key"])
    with ArtifactWriter(path, "features", key, config, ["dataset-key"], attrs={"normalized": False}) as w:
        w.create("features", (n, d), np.float32)
        for start in range(0, n, block):
            w.write_rows("features", start, feats[start : start + block])
        w.write("labels", np.arange(n) % 3)
        w.write("index", np.arange(n))
        w.write("views/weak", feats * 2)
    return feats


def test_round_trip_attributes_and_streamed_rows(tmp_path):
    feats = write_features(tmp_path / "f.h5")
    with open_artifact(tmp_path / "f.h5", "features") as art:
        assert art.kind == "features" and art.schema_version == 1
        assert art.inputs == ["dataset-key"]
        assert art.config == {"d": 8, "seed": 0}
        assert art.attr("normalized") == False  # noqa: E712 - h5py returns numpy bool
        np.testing.assert_array_equal(art.read("features"), feats)
        np.testing.assert_array_equal(art.read("views/weak"), feats * 2)
        assert art.created.endswith("+00:00")
    # readable by plain h5py, as promised to other tools
    with h5py.File(tmp_path / "f.h5") as f:
        assert f.attrs["kind"] == "features"
        assert f["labels"].compression == "gzip"
    assert verify_artifact(tmp_path / "f.h5") == []


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "f.h5"
    with pytest.raises(RuntimeError):
        with ArtifactWriter(target, "features", "k", {}) as w:
            w.write("features", np.zeros((3, 2)))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    # an incomplete artifact (missing required datasets) is refused at commit time
    with pytest.raises(ValueError):
        with ArtifactWriter(target, "features", "k", {}) as w:
            w.write("features", np.zeros((3, 2)))
    assert list(tmp_path.iterdir()) == []


def test_out_of_order_rows_are_refused(tmp_path):
    with pytest.raises(ValueError):
        with ArtifactWriter(tmp_path / "f.h5", "features", "k", {}) as w:
            w.create("features", (4, 2), np.float32)
            w.write_rows("features", 2, np.zeros((2, 2)))
    assert not (tmp_path / "f.h5").exists()


def test_rows_written_in_any_order_give_the_in_order_file_and_checksum(tmp_path):
    """Blocks that torchrun ranks computed reach rank 0 out of order: same data, same digest."""
    x = np.arange(40, dtype=np.float32).reshape(10, 4)

    def write(path, blocks, any_order):
        with ArtifactWriter(path, "features", "k", {}) as w:
            w.create("features", (10, 4), np.float16, any_order=any_order)
            for start, stop in blocks:
                w.write_rows("features", start, x[start:stop])
            w.write("labels", np.zeros(10, dtype=np.int64))
            w.write("index", np.arange(10))

    write(tmp_path / "ordered.h5", [(0, 3), (3, 7), (7, 10)], False)
    write(tmp_path / "shuffled.h5", [(7, 10), (0, 3), (3, 7)], True)
    with h5py.File(tmp_path / "ordered.h5") as a, h5py.File(tmp_path / "shuffled.h5") as b:
        np.testing.assert_array_equal(b["features"][:], x.astype(np.float16))
        assert b["features"].attrs["checksum"] == a["features"].attrs["checksum"]
    assert verify_artifact(tmp_path / "shuffled.h5") == []
    # A row written twice, or one never written, is refused and leaves no file.
    for blocks in ([(0, 6), (5, 10)], [(0, 3), (4, 10)]):
        with pytest.raises(ValueError):
            write(tmp_path / "bad.h5", blocks, True)
        assert not (tmp_path / "bad.h5").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ordered.h5", "shuffled.h5"]


def test_content_key_depends_on_config_and_inputs_only():
    a = content_key("features", {"x": 1, "y": [1, 2]}, ["in1"])
    assert a == content_key("features", {"y": [1, 2], "x": 1}, ["in1"])  # key order irrelevant
    assert a != content_key("features", {"x": 2, "y": [1, 2]}, ["in1"])
    assert a != content_key("features", {"x": 1, "y": [1, 2]}, ["in2"])
    assert a != content_key("neighbors", {"x": 1, "y": [1, 2]}, ["in1"])
    assert len(a) == 24 and int(a, 16) >= 0


def test_verify_detects_tampering(tmp_path):
    path = tmp_path / "f.h5"
    write_features(path)
    with h5py.File(path, "a") as f:
        f["features"][3, 1] = 1234.5
    problems = verify_artifact(path)
    assert any("features" in p and "checksum mismatch" in p for p in problems)


def test_open_artifact_errors(tmp_path):
    with pytest.raises(BadInput, match="does not exist"):
        open_artifact(tmp_path / "none.h5")
    write_features(tmp_path / "f.h5")
    with pytest.raises(BadInput, match="features artifact, but a neighbors"):
        open_artifact(tmp_path / "f.h5", "neighbors")
    with h5py.File(tmp_path / "f.h5", "a") as f:
        del f["index"]
    with pytest.raises(BadInput, match="missing its 'index'"):
        open_artifact(tmp_path / "f.h5")


def _compute_in_process(args):
    root, counter = args
    path = cache_path(Path(root), "features", "samekey")

    def build(target):
        with open(counter, "a") as fh:
            fh.write("built\n")
        time.sleep(0.5)  # long enough for the other process to arrive and wait on the lock
        write_features(target, key="samekey")

    hit = get_or_compute(path, "features", "samekey", build)
    return str(path), hit


def test_two_processes_compute_a_key_once(tmp_path):
    counter = tmp_path / "count.txt"
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        results = pool.map(_compute_in_process, [(str(tmp_path / "cache"), str(counter))] * 2)
    assert counter.read_text().count("built") == 1
    assert sorted(hit for _, hit in results) == [False, True]
    assert results[0][0] == results[1][0]
    assert verify_artifact(Path(results[0][0])) == []


def test_cache_hit_skips_build_and_force_rebuilds(tmp_path):
    path = cache_path(tmp_path, "features", "k1")
    calls = []

    def build(target):
        calls.append(1)
        write_features(target, key="k1")

    assert get_or_compute(path, "features", "k1", build) is False
    assert get_or_compute(path, "features", "k1", build) is True
    assert len(calls) == 1
    assert get_or_compute(path, "features", "k1", build, force=True) is False
    assert len(calls) == 2


# -- ccli cache ----------------------------------------------------------------------------------
def populate(root: Path):
    paths = []
    for seed in range(3):
        key = content_key("features", {"seed": seed})
        path = cache_path(root, "features", key)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_features(path, key=key, seed=seed)
        paths.append(path)
    return paths


def test_cache_ls_info_verify(cli, tmp_path):
    root = tmp_path / "cache"
    paths = populate(root)
    listing = json.loads(cli("cache", "ls", "--json").out)
    assert sorted(e["path"] for e in listing) == sorted(map(str, paths))
    assert all(e["ok"] and e["shape"] == "50×8" and e["kind"] == "features" for e in listing)

    info = json.loads(cli("cache", "info", paths[0].stem[:10], "--json").out)
    assert info["attrs"]["kind"] == "features"
    assert info["datasets"]["features"]["shape"] == [50, 8]
    assert info["datasets"]["views/weak"]["shape"] == [50, 8]

    ok = cli("cache", "verify", "--json")
    assert ok.code == 0 and json.loads(ok.out) == {"checked": 3, "damaged": {}}
    with h5py.File(paths[1], "a") as f:
        f["labels"][0] = 2
    bad = cli("cache", "verify", "--json")
    assert bad.code == 1
    assert list(json.loads(bad.out)["damaged"]) == [str(paths[1])]


def test_cache_gc_removes_leftovers_damaged_and_old(cli, tmp_path):
    root = tmp_path / "cache"
    paths = populate(root)
    leftover = root / "features" / ".x.h5.tmp-1-abcd"
    leftover.write_bytes(b"partial")
    old = time.time() - 3 * 86400
    os.utime(leftover, (old, old))
    paths[2].write_bytes(b"garbage")  # damaged
    os.utime(paths[0], (old, old))  # unused for 3 days

    dry = cli("cache", "gc", "--older-than", "1", "--dry-run")
    assert dry.code == 0 and all(p.exists() for p in paths) and leftover.exists()
    assert sorted(dry.out.split()) == sorted([str(leftover), str(paths[2]), str(paths[0])])

    result = cli("cache", "gc", "--older-than", "1")
    assert result.code == 0
    assert not leftover.exists() and not paths[2].exists() and not paths[0].exists()
    assert paths[1].exists()


def test_cache_gc_max_size_evicts_least_recently_used(tmp_path):
    root = tmp_path / "cache"
    paths = populate(root)
    now = time.time()
    for age, path in zip((30, 20, 10), paths):
        os.utime(path, (now - age, now - age))
    size = paths[0].stat().st_size
    doomed = [p for p, _ in plan_gc(root, max_bytes=int(size * 1.5))]
    assert doomed == [paths[0], paths[1]]


def test_cache_bad_input(cli, tmp_path):
    assert_bad_input(cli("cache", "ls", "--kind", "bogus"), "--kind bogus")
    assert_bad_input(cli("cache", "info", "deadbeef"), "deadbeef")
    assert_bad_input(cli("cache", "gc", "--max-size", "lots"), "--max-size lots")


def test_set_float_accepts_yaml_exponent_without_dot():
    from dataclasses import dataclass

    from ccli.config import build_config, parse_sets

    @dataclass
    class Config:
        lr: float = 1.0

    assert build_config(Config, [("--set", parse_sets(["lr=2e-3"]))]).lr == 0.002
    with pytest.raises(BadInput, match="must be a number"):
        build_config(Config, [("--set", parse_sets(["lr=fast"]))])
