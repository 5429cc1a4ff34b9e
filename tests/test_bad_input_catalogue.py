"""The bad-input catalogue (issue 16): one table of refused command lines across every subcommand.

Each row must exit 2 with exactly one sentence on stderr (`ccli: error: … .`), nothing on
stdout, no traceback, and leave every file and folder of the test world (inputs, cache,
output folder, working directory) exactly as it was: no output, no cache entry, no lock,
no temp, no run folder, no config.yaml. The inputs are tiny hand-made artifacts, so most
rows fail at validation and the whole table runs in seconds.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest

N, D = 40, 8


def _features(path: Path, x: np.ndarray, labels: np.ndarray, key: str) -> Path:
    from ccli.store import ArtifactWriter

    with ArtifactWriter(path, "features", key, {"made": "by hand", "key": key}) as w:
        w.write("features", x.astype(np.float32))
        w.write("labels", labels.astype(np.int64))
        w.write("index", np.arange(len(labels), dtype=np.int64))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Inputs good and bad, an empty cache holding one entry, an output folder and a working dir."""
    from ccli.graph.build import build_knn_graph
    from ccli.neighbors.build import compute_neighbors
    from ccli.neighbors.config import NeighborsConfig
    from ccli.store import ArtifactWriter

    root = tmp_path_factory.mktemp("catalogue")
    inp, cache, out, cwd = (root / name for name in ("inputs", "cache", "out", "cwd"))
    for folder in (inp, cache, out, cwd):
        folder.mkdir()
    rng = np.random.default_rng(0)
    labels = np.arange(N) % 4
    x = rng.normal(size=(N, D)) + labels[:, None]
    p = {"root": root, "inputs": inp, "cache": cache, "out": out, "cwd": cwd}
    p["F"] = _features(inp / "f.h5", x, labels, "a" * 24)
    zero = x.copy()
    zero[3] = 0.0
    p["FZ"] = _features(inp / "zero.h5", zero, labels, "b" * 24)
    nan = x.copy()
    nan[5, 2] = np.nan
    nan[7, 1] = np.inf
    p["FN"] = _features(inp / "nan.h5", nan, labels, "c" * 24)
    p["FL"] = _features(inp / "lengths.h5", x, labels, "d" * 24)
    with h5py.File(p["FL"], "r+") as h5:  # labels one row short of features
        del h5["labels"]
        h5["labels"] = labels[:-1]
    p["FS"] = _features(inp / "schema.h5", x, labels, "e" * 24)
    with h5py.File(p["FS"], "r+") as h5:
        h5.attrs["schema_version"] = "one"
    p["NB"] = compute_neighbors(p["F"], NeighborsConfig(k=5, backend="torch"), out=inp / "nb.h5",
                                cache_dir=cache).path
    p["G"] = build_knn_graph(p["NB"], 3, out=inp / "g.h5", cache_dir=cache).path
    p["P"] = inp / "p.h5"
    with ArtifactWriter(p["P"], "predictions", "f" * 24, {"method": "by hand"}) as w:
        w.write("labels", labels.astype(np.int64))
        w.write("index", np.arange(N, dtype=np.int64))
        w.write("targets", labels.astype(np.int64))
    (inp / "garbage.h5").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (inp / "garbage.pt").write_bytes(b"PK\x03\x04" + rng.integers(0, 256, 2048, dtype=np.uint8).tobytes())
    (inp / "empty.h5").write_bytes(b"")
    (inp / "empty.pt").write_bytes(b"")
    (inp / "notes.txt").write_text("not an artifact\n")
    (inp / "adir").mkdir()
    np.save(inp / "short.npy", labels[:-3])
    np.save(inp / "feat.npy", x.astype(np.float32))
    np.save(inp / "nanfeat.npy", nan.astype(np.float32))
    (inp / "bad.txt").write_text("1\n2\nthree\n")
    # One real cache entry, so the cache folder is not empty.
    compute_neighbors(p["F"], NeighborsConfig(k=3, backend="torch"), cache_dir=cache)
    return p


def snapshot(root: Path) -> dict[str, tuple]:
    """Every file and folder under `root`, with size and mtime for files."""
    state: dict[str, tuple] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs:
            state[os.path.relpath(os.path.join(dirpath, name), root)] = ("dir",)
        for name in files:
            full = os.path.join(dirpath, name)
            st = os.stat(full)
            state[os.path.relpath(full, root)] = ("file", st.st_size, st.st_mtime_ns)
    return state


# (id, command line with {placeholders}, a word the one sentence must contain)
CASES = [
    # -- pretrain ------------------------------------------------------------------------------
    ("pretrain-epochs-0", "pretrain --data digits --epochs 0 -o {OUT}", "epochs=0"),
    ("pretrain-epochs-negative", "pretrain --data digits --epochs -3 -o {OUT}", "epochs=-3"),
    ("pretrain-epochs-not-int", "pretrain --data digits --epochs abc", "--epochs"),
    ("pretrain-batch-0", "pretrain --data digits --batch-size 0 -o {OUT}", "batch_size=0"),
    ("pretrain-batch-1", "pretrain --data digits --batch-size 1 -o {OUT}", "batch_size=1"),
    ("pretrain-temperature-0", "pretrain --data digits --set temperature=0 -o {OUT}", "temperature=0"),
    ("pretrain-temperature-negative", "pretrain --data digits --set temperature=-0.5 -o {OUT}", "temperature"),
    ("pretrain-warmup-negative", "pretrain --data digits --set warmup_epochs=-1 -o {OUT}", "warmup_epochs"),
    ("pretrain-method", "pretrain --data digits --method bogus", "--method bogus"),
    ("pretrain-preset", "pretrain --data digits --preset nope", "--preset nope"),
    ("pretrain-backbone", "pretrain --data digits --backbone nope -o {OUT}", "nope"),
    ("pretrain-data", "pretrain --data nope -o {OUT}", "nope"),
    ("pretrain-data-path", "pretrain --data fashion-mnist:{INPUTS}/missing -o {OUT}", "missing"),
    ("pretrain-split", "pretrain --data digits --split bogus -o {OUT}", "bogus"),
    ("pretrain-device-tpu", "pretrain --data digits --device tpu -o {OUT}", "--device tpu"),
    ("pretrain-device-cuda99", "pretrain --data digits --device cuda:99 -o {OUT}", "--device cuda:99"),
    ("pretrain-unknown-key", "pretrain --data digits --set nonsense=1 -o {OUT}", "nonsense"),
    ("pretrain-set-type", "pretrain --data digits --set epochs=abc -o {OUT}", "epochs"),
    ("pretrain-out-file", "pretrain --data digits --epochs 1 -o {INPUTS}/notes.txt", "notes.txt"),
    ("pretrain-cache-dir-file", "pretrain --data digits --epochs 1 --cache-dir {INPUTS}/notes.txt", "--cache-dir"),
    ("pretrain-unknown-option", "pretrain --data digits --bogus", "--bogus"),
    # -- embed ---------------------------------------------------------------------------------
    ("embed-garbage-checkpoint", "embed {INPUTS}/garbage.pt -o {OUT}", "garbage.pt"),
    ("embed-empty-checkpoint", "embed {INPUTS}/empty.pt -o {OUT}", "empty.pt"),
    ("embed-missing-checkpoint", "embed {INPUTS}/missing.pt -o {OUT}", "missing.pt"),
    ("embed-directory-checkpoint", "embed {INPUTS}/adir -o {OUT}", "adir"),
    ("embed-text-checkpoint", "embed {INPUTS}/notes.txt -o {OUT}", "notes.txt"),
    ("embed-artifact-as-checkpoint", "embed {F} -o {OUT}", "f.h5"),
    ("embed-layer", "embed {INPUTS}/garbage.pt --layer bogus", "--layer bogus"),
    ("embed-draws-0", "embed {INPUTS}/garbage.pt --draws 0", "--draws 0"),
    ("embed-batch-0", "embed {INPUTS}/garbage.pt --batch-size 0", "--batch-size 0"),
    ("embed-dtype", "embed {INPUTS}/garbage.pt --dtype int8", "--dtype int8"),
    ("embed-views", "embed {INPUTS}/garbage.pt --views bogus", "bogus"),
    ("embed-device", "embed {INPUTS}/garbage.pt --device cuda:99", "--device cuda:99"),
    ("embed-cache-dir-file", "embed {INPUTS}/garbage.pt --cache-dir {INPUTS}/notes.txt", "--cache-dir"),
    # -- neighbors -----------------------------------------------------------------------------
    ("neighbors-missing", "neighbors {INPUTS}/missing.h5", "missing.h5"),
    ("neighbors-of-neighbors", "neighbors {NB}", "neighbors artifact"),
    ("neighbors-of-graph", "neighbors {G}", "graph artifact"),
    ("neighbors-garbage", "neighbors {INPUTS}/garbage.h5", "garbage.h5"),
    ("neighbors-empty", "neighbors {INPUTS}/empty.h5", "empty"),
    ("neighbors-text", "neighbors {INPUTS}/notes.txt", "notes.txt"),
    ("neighbors-directory", "neighbors {INPUTS}/adir", "adir"),
    ("neighbors-schema-version", "neighbors {FS} -k 3", "schema_version"),
    ("neighbors-lengths", "neighbors {FL} -k 3", "disagree"),
    ("neighbors-nan", "neighbors {FN} -k 3 -o {OUT}", "NaN"),
    ("neighbors-zero-rows-cosine", "neighbors {FZ} -k 3 -o {OUT}", "all-zero"),
    ("neighbors-k-0", "neighbors {F} -k 0", "0"),
    ("neighbors-k-negative", "neighbors {F} -k -1", "-1"),
    ("neighbors-k-too-big", "neighbors {F} -k 40", "40"),
    ("neighbors-metric", "neighbors {F} --metric bogus", "bogus"),
    ("neighbors-backend", "neighbors {F} --backend bogus", "bogus"),
    ("neighbors-index", "neighbors {F} --index bogus", "bogus"),
    ("neighbors-ivf-nlist-over-n", "neighbors {F} -k 3 --index ivf --nlist 100 -o {OUT}", "nlist=100"),
    ("neighbors-ivf-nlist-negative", "neighbors {F} -k 3 --index ivf --nlist -1 -o {OUT}", "nlist=-1"),
    ("neighbors-ivf-nprobe-0", "neighbors {F} -k 3 --index ivf --nprobe 0 -o {OUT}", "nprobe=0"),
    ("neighbors-block-rows", "neighbors {F} -k 3 --block-rows -5 -o {OUT}", "block_rows=-5"),
    ("neighbors-kmeans-temperature", "neighbors {F} -k 3 --set kmeans_temperature=0", "kmeans_temperature=0"),
    ("neighbors-multi-view-no-views", "neighbors {F} -k 3 --multi-view", "views"),
    ("neighbors-device", "neighbors {F} -k 3 --device cuda:99", "--device cuda:99"),
    ("neighbors-out-other-kind", "neighbors {F} -k 3 -o {G}", "graph artifact"),
    ("neighbors-out-not-artifact", "neighbors {F} -k 3 -o {INPUTS}/notes.txt", "notes.txt"),
    ("neighbors-out-other-key", "neighbors {F} -k 4 -o {NB}", "key"),
    ("neighbors-out-directory", "neighbors {F} -k 3 -o {INPUTS}/adir", "directory"),
    ("neighbors-cache-dir-file", "neighbors {F} -k 3 --cache-dir {INPUTS}/notes.txt", "--cache-dir"),
    ("neighbors-set-type", "neighbors {F} --set k=abc", "k"),
    ("neighbors-preset", "neighbors {F} --preset nope", "nope"),
    # -- graph ---------------------------------------------------------------------------------
    ("graph-both-builders", "graph {NB} --knn 3 --self-expressive", "exactly one"),
    ("graph-no-builder", "graph {NB}", "exactly one"),
    ("graph-knn-0", "graph {NB} --knn 0", "--knn 0"),
    ("graph-knn-too-big", "graph {NB} --knn 40", "--knn 40"),
    ("graph-knn-over-stored", "graph {NB} --knn 10", "--knn 10"),
    ("graph-of-predictions", "graph {P} --knn 3", "predictions artifact"),
    ("graph-garbage", "graph {INPUTS}/garbage.h5 --knn 3", "garbage.h5"),
    ("graph-nan-features", "graph {FN} --knn 3 -o {OUT}", "NaN"),
    ("graph-lengths", "graph {FL} --knn 3 -o {OUT}", "disagree"),
    ("graph-self-expressive-of-neighbors", "graph {NB} --self-expressive", "neighbors artifact"),
    ("graph-se-mode", "graph {F} --self-expressive --se-mode bogus", "--se-mode bogus"),
    ("graph-chunk-size", "graph {F} --self-expressive --chunk-size 0", "--chunk-size 0"),
    ("graph-lam", "graph {F} --self-expressive --lam -1", "--lam -1"),
    ("graph-num-pos", "graph {NB} --knn 3 --num-pos 0", "--num-pos 0"),
    ("graph-out-other-kind", "graph {NB} --knn 3 -o {F}", "features artifact"),
    ("graph-schema-version", "graph {FS} --self-expressive", "schema_version"),
    ("graph-device", "graph {NB} --knn 3 --device cuda:99", "--device cuda:99"),
    ("graph-features-mismatch", "graph {NB} --knn 3 --features {FZ}", "zero.h5"),
    # -- train ---------------------------------------------------------------------------------
    ("train-no-method", "train --data digits", "--method"),
    ("train-method", "train --method bogus --data digits", "bogus"),
    ("train-epochs-0", "train --method cc --data digits --epochs 0 -o {OUT}", "epochs=0"),
    ("train-epochs-negative", "train --method cc --data digits --epochs -2 -o {OUT}", "epochs=-2"),
    ("train-batch-0", "train --method cc --data digits --batch-size 0 -o {OUT}", "batch_size=0"),
    ("train-tau-0", "train --method cc --data digits --set tau=0 -o {OUT}", "tau=0"),
    ("train-tau-c-negative", "train --method cc --data digits --set tau_c=-1 -o {OUT}", "tau_c=-1"),
    ("train-device", "train --method cc --data digits --device cuda:99 -o {OUT}", "--device cuda:99"),
    ("train-garbage-checkpoint", "train --method cc --data digits --checkpoint {INPUTS}/garbage.pt -o {OUT}", "garbage.pt"),
    ("train-kmeans-nan", "train --method kmeans --features {FN} -o {OUT}", "NaN"),
    ("train-kmeans-wrong-kind", "train --method kmeans --features {NB} -o {OUT}", "neighbors artifact"),
    ("train-kmeans-garbage", "train --method kmeans --features {INPUTS}/garbage.h5 -o {OUT}", "garbage.h5"),
    ("train-kmeans-lengths", "train --method kmeans --features {FL} -o {OUT}", "disagree"),
    ("train-kmeans-schema", "train --method kmeans --features {FS} -o {OUT}", "schema_version"),
    ("train-out-file", "train --method kmeans --features {F} -o {INPUTS}/notes.txt", "notes.txt"),
    ("train-cache-dir-file", "train --method kmeans --features {F} --cache-dir {INPUTS}/notes.txt", "--cache-dir"),
    ("train-k-0", "train --method kmeans --features {F} --k 0 -o {OUT}", "0"),
    # -- eval ----------------------------------------------------------------------------------
    ("eval-missing", "eval {INPUTS}/missing.h5", "missing.h5"),
    ("eval-garbage", "eval {INPUTS}/garbage.h5", "garbage.h5"),
    ("eval-features", "eval {F}", "features artifact"),
    ("eval-labels-missing", "eval {P} --labels {INPUTS}/missing.npy", "missing.npy"),
    ("eval-labels-length", "eval {P} --labels {INPUTS}/short.npy", "37"),
    ("eval-text-garbage", "eval {INPUTS}/bad.txt --labels {INPUTS}/short.npy", "bad.txt"),
    ("eval-unknown-option", "eval {P} --bogus", "--bogus"),
    # -- report --------------------------------------------------------------------------------
    ("report-missing", "report {INPUTS}/missing-run -o {OUT}", "missing-run"),
    ("report-out-file", "report {P} -o {INPUTS}/notes.txt", "notes.txt"),
    ("report-garbage", "report {INPUTS}/garbage.h5 -o {OUT}", "garbage.h5"),
    ("report-features", "report {F} -o {OUT}", "f.h5"),
    # -- cache ---------------------------------------------------------------------------------
    ("cache-info-unknown-key", "cache info deadbeef", "deadbeef"),
    ("cache-info-garbage", "cache info {INPUTS}/garbage.h5", "garbage.h5"),
    ("cache-ls-kind", "cache ls --kind bogus", "--kind bogus"),
    ("cache-gc-size", "cache gc --max-size lots", "--max-size lots"),
    ("cache-gc-older-than", "cache gc --older-than -1", "--older-than"),
    ("cache-verify-cache-dir-missing", "cache verify --cache-dir {INPUTS}/missing-cache", "does not exist"),
    ("cache-verify-cache-dir-file", "cache verify --cache-dir {INPUTS}/notes.txt", "--cache-dir"),
    ("cache-gc-cache-dir-missing", "cache gc --cache-dir {INPUTS}/missing-cache", "does not exist"),
    ("cache-ls-cache-dir-file", "cache ls --cache-dir {INPUTS}/notes.txt", "--cache-dir"),
    ("cache-unknown-subcommand", "cache frobnicate", "frobnicate"),
    # -- data ----------------------------------------------------------------------------------
    ("data-info-kind", "data info bogus", "bogus"),
    ("data-info-path", "data info fashion-mnist:{INPUTS}/missing", "missing"),
    ("data-info-split", "data info digits --split bogus", "bogus"),
    ("data-info-image-size", "data info digits --image-size 0", "0"),
    # -- import / export ----------------------------------------------------------------------
    ("import-missing", "import {INPUTS}/missing.npy -o {OUT}", "missing.npy"),
    ("import-garbage", "import {INPUTS}/garbage.h5 -o {OUT}", "garbage.h5"),
    ("import-text", "import {INPUTS}/notes.txt -o {OUT}", "notes.txt"),
    ("import-dtype", "import {INPUTS}/nanfeat.npy --dtype int8 -o {OUT}", "int8"),
    ("import-nan", "import {INPUTS}/nanfeat.npy -o {OUT}", "NaN"),
    ("import-labels-length", "import {INPUTS}/feat.npy --labels {INPUTS}/short.npy -o {OUT}", "short.npy"),
    ("import-out-other-kind", "import {INPUTS}/feat.npy -o {G}", "graph artifact"),
    ("import-cache-dir-file", "import {INPUTS}/feat.npy --cache-dir {INPUTS}/notes.txt", "--cache-dir"),
    ("export-missing", "export {INPUTS}/missing.h5 -o {OUT}", "missing.h5"),
    ("export-features", "export {F} -o {OUT}", "features artifact"),
    ("export-garbage", "export {INPUTS}/garbage.h5 -o {OUT}", "garbage.h5"),
    ("export-format", "export {P} --format xml -o {OUT}", "xml"),
    # -- completions and the root --------------------------------------------------------------
    ("completions-shell", "completions tcsh", "tcsh"),
    ("completions-no-shell", "completions", "shell"),
    ("unknown-command", "frobnicate", "frobnicate"),
]


def test_the_catalogue_is_large_and_covers_every_subcommand():
    assert len(CASES) >= 80
    assert len({case[0] for case in CASES}) == len(CASES)
    commands = {line.split()[0] for _, line, _ in CASES}
    for name in ("pretrain", "embed", "neighbors", "graph", "train", "eval", "report", "cache", "data", "completions",
                 "import", "export"):
        assert name in commands, name


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_bad_input_is_refused_in_one_sentence_and_writes_nothing(case, world, capsys, monkeypatch):
    from ccli.cli.main import run

    name, line, needle = case
    places = {k: str(v) for k, v in world.items()}
    places.update(OUT=str(world["out"] / f"{name}.out"), INPUTS=str(world["inputs"]))
    argv = [part.format(**places) for part in line.split()]
    monkeypatch.chdir(world["cwd"])
    monkeypatch.setenv("CCLI_CACHE", str(world["cache"]))
    before = snapshot(world["root"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        run(argv)
    captured = capsys.readouterr()
    code = exc.value.code
    assert code == 2, (code, captured.err)
    assert "Traceback" not in captured.err and "unexpected" not in captured.err, captured.err
    lines = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("ccli: error: "), captured.err
    assert lines[0].rstrip().endswith("."), lines[0]
    assert needle in lines[0], (needle, lines[0])
    assert captured.out == ""
    after = snapshot(world["root"])
    added = sorted(set(after) - set(before))
    changed = sorted(k for k in before if k in after and before[k] != after[k])
    removed = sorted(set(before) - set(after))
    assert not added and not changed and not removed, {"added": added, "changed": changed, "removed": removed}
