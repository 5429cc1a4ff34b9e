"""Issue 14: the user's own features in (import, .npy/.npz on the fly, keyless files), per-sample
results out (export), and labels as users have them (id,label CSV, class names, -1, --match)."""

from __future__ import annotations

import csv
import json

import h5py
import numpy as np
import pytest
from sklearn.metrics import (
    calinski_harabasz_score,
    davies_bouldin_score,
    normalized_mutual_info_score,
    silhouette_score,
)

from ccli.store import ArtifactWriter, content_key, open_artifact
from ccli.store.sample_ids import read_class_names, read_ids
from tests.conftest import assert_bad_input


def _blobs(seed: int, n_per: int = 40, k: int = 3, d: int = 5, spread: float = 0.3):
    rng = np.random.RandomState(seed)
    centres = rng.randn(k, d) * 4
    y = np.repeat(np.arange(k), n_per)
    x = (centres[y] + spread * rng.randn(len(y), d)).astype(np.float32)
    return x, y


def _keyless_features(path, x, y):
    """A features file written by hand: kind and schema_version, but no key attribute."""
    with h5py.File(path, "w") as f:
        f.attrs["kind"] = "features"
        f.attrs["schema_version"] = 1
        f["features"] = x
        f["labels"] = y
        f["index"] = np.arange(len(x))
    return path


def test_two_keyless_files_never_share_a_cache_entry(cli, tmp_path):
    # The bug: both files got the key "" and so the same cached neighbours and k-means run.
    x1, y1 = _blobs(0)
    x2, y2 = _blobs(1, spread=3.0)  # a different, much harder problem
    a = _keyless_features(tmp_path / "a.h5", x1, y1)
    b = _keyless_features(tmp_path / "b.h5", x2, y2)
    with open_artifact(a) as fa, open_artifact(b) as fb:
        assert fa.key and fb.key and fa.key != fb.key
    with open_artifact(a) as again:
        assert again.key == fa.key  # a content hash: stable across opens
    nb = [cli("neighbors", p, "-k", "5", "-q").out.strip() for p in (a, b)]
    assert nb[0] != nb[1]
    for path, x in zip(nb, (x1, x2)):
        with h5py.File(path) as f:
            got = f["indices"][()]
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        sims = xn @ xn.T
        np.fill_diagonal(sims, -np.inf)
        # The top neighbour of every row is the true most similar point of *this* file.
        assert (got[:, 0] == sims.argmax(1)).mean() > 0.99
    runs = []
    for p, y in ((a, y1), (b, y2)):
        result = cli("train", "--method", "kmeans", "--features", p, "--json", "--set", "backend=sklearn")
        assert result.code == 0, result.err
        runs.append(json.loads(result.out))
    assert runs[0]["predictions"] != runs[1]["predictions"]
    for run, y in zip(runs, (y1, y2)):
        with h5py.File(run["predictions"]) as f:
            assert (f["targets"][()] == y).all()
            nmi = normalized_mutual_info_score(y, f["labels"][()])
        assert run["scores"]["nmi"] == pytest.approx(nmi)


def test_import_npy_and_direct_npy_share_the_content_key(cli, tmp_path):
    x, y = _blobs(2)
    np.save(tmp_path / "feats.npy", x)
    np.save(tmp_path / "y.npy", y)
    first = cli("import", tmp_path / "feats.npy", "--labels", tmp_path / "y.npy", "--names", "a,b,c")
    assert first.code == 0, first.err
    path = first.out.strip()
    with open_artifact(path, "features") as art:
        np.testing.assert_array_equal(art.read("features"), x)
        np.testing.assert_array_equal(art.read("labels"), y)
        assert read_class_names(art) == ["a", "b", "c"] and read_ids(art)[:2] == ["0", "1"]
    again = cli("import", tmp_path / "feats.npy", "--labels", tmp_path / "y.npy", "--names", "a,b,c")
    assert again.out.strip() == path and "cache hit" in again.err
    # Given directly to a command, the .npy is imported on the fly (no labels: another key).
    direct = cli("train", "--method", "kmeans", "--features", tmp_path / "feats.npy", "-k", "3", "--json")
    assert direct.code == 0, direct.err
    with h5py.File(json.loads(direct.out)["predictions"]) as f:
        assert len(f["labels"]) == len(x) and (f["targets"][()] == -1).all()


def test_import_npz_h5_and_csv_with_ids(cli, tmp_path):
    x, y = _blobs(3, n_per=5)
    np.savez(tmp_path / "f.npz", features=x, labels=y, ids=np.array([f"im{i}.png" for i in range(len(x))]))
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f["features"] = x  # only a features dataset: no kind, no labels
    with open(tmp_path / "f.csv", "w") as fh:
        fh.write("file,f0,f1,f2,f3,f4\n")
        for i, row in enumerate(x):
            fh.write(f"im{i}.png," + ",".join(repr(float(v)) for v in row) + "\n")
    for name in ("f.npz", "plain.h5", "f.csv"):
        result = cli("import", tmp_path / name)
        assert result.code == 0, (name, result.err)
        with open_artifact(result.out.strip(), "features") as art:
            np.testing.assert_allclose(art.read("features"), x, rtol=1e-6)
            ids = read_ids(art)
            labels = art.read("labels")
        if name == "plain.h5":
            assert ids[:2] == ["0", "1"] and (labels == -1).all()
        else:
            assert ids[:2] == ["im0.png", "im1.png"]
        if name == "f.npz":
            np.testing.assert_array_equal(labels, y)
    # The plain .h5 also goes straight to neighbors.
    nb = cli("neighbors", tmp_path / "plain.h5", "-k", "3", "-q")
    assert nb.code == 0, nb.err


def test_import_bad_inputs_write_nothing(cli, tmp_path):
    np.save(tmp_path / "vec.npy", np.arange(10.0))
    np.save(tmp_path / "strs.npy", np.array([["a", "b"], ["c", "d"]]))
    np.save(tmp_path / "cube.npy", np.zeros((2, 3, 4)))
    np.save(tmp_path / "ok.npy", np.zeros((4, 2), np.float32))
    (tmp_path / "y.txt").write_text("0\n1\n")
    (tmp_path / "f.parquet").write_text("x")
    assert_bad_input(cli("import", tmp_path / "vec.npy"), "vec.npy", "1-D", "--labels")
    assert_bad_input(cli("import", tmp_path / "strs.npy"), "strs.npy", "numbers")
    assert_bad_input(cli("import", tmp_path / "cube.npy"), "cube.npy", "(2, 3, 4)")
    assert_bad_input(cli("import", tmp_path / "ok.npy", "--labels", tmp_path / "y.txt"), "2 labels", "4 samples")
    assert_bad_input(cli("import", tmp_path / "f.parquet"), "f.parquet", ".npy")
    assert_bad_input(cli("train", "--method", "kmeans", "--features", tmp_path / "vec.npy"), "vec.npy", "1-D")
    # -k against the user's own 4-row file names that file (not its cached import) and imports nothing
    assert_bad_input(cli("neighbors", tmp_path / "ok.npy", "-k", "4"), "-k 4", str(tmp_path / "ok.npy"), "N=4")
    assert_bad_input(cli("neighbors", tmp_path / "ok.npy", "--prune", "maybe"), "option prune='maybe'", "auto, on, off")
    # no labels and no --k: the user's file is named, and it is not imported before the refusal
    assert_bad_input(cli("train", "--method", "kmeans", "--features", tmp_path / "ok.npy"),
                     str(tmp_path / "ok.npy"), "no known class count", "--k")
    assert_bad_input(cli("train", "--method", "kmeans", "--features", tmp_path / "ok.npy", "--k", "5"),
                     "--k 5", "larger than the 4 samples", str(tmp_path / "ok.npy"))
    cache = tmp_path / "cache"
    assert not cache.exists() or not any(p.suffix == ".h5" for p in cache.rglob("*"))


def test_plain_arrays_and_half_artifacts_get_clear_messages(cli, tmp_path):
    np.save(tmp_path / "p.npy", np.zeros((3, 2)))
    with h5py.File(tmp_path / "kindonly.h5", "w") as f:
        f.attrs["kind"] = "predictions"
        f["labels"] = np.zeros(3, np.int64)
    assert_bad_input(cli("report", tmp_path / "p.npy"), "NumPy .npy array")
    assert_bad_input(cli("eval", tmp_path / "kindonly.h5"), "schema_version")


def _predictions(path, labels, targets=None, probs=None, ids=None, class_names=None):
    from ccli.store.sample_ids import write_sample_ids

    config = {"method": "test", "n": len(labels)}
    with ArtifactWriter(path, "predictions", content_key("predictions", config), config) as w:
        w.write("labels", np.asarray(labels))
        w.write("index", np.arange(len(labels)))
        if targets is not None:
            w.write("targets", np.asarray(targets))
        if probs is not None:
            w.write("probs", np.asarray(probs, np.float32))
        write_sample_ids(w, ids, class_names)
    return path


def test_export_csv_and_jsonl_rows(cli, tmp_path):
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], np.float32)
    pred = _predictions(tmp_path / "p.h5", probs.argmax(1), targets=[1, -1, 0], probs=probs,
                        ids=["a/x.png", "b/y.png", "z.png"], class_names=["cat", "dog"])
    result = cli("export", pred, "-o", tmp_path / "out.csv")
    assert result.code == 0 and result.out.strip() == str(tmp_path / "out.csv")
    rows = list(csv.DictReader(open(tmp_path / "out.csv")))
    assert [r["id"] for r in rows] == ["a/x.png", "b/y.png", "z.png"]
    assert [int(r["cluster"]) for r in rows] == [0, 1, 0]
    assert [float(r["confidence"]) for r in rows] == pytest.approx([0.9, 0.8, 0.6])
    assert [r["label"] for r in rows] == ["1", "", "0"] and [r["class"] for r in rows] == ["dog", "", "cat"]
    lines = cli("export", pred, "--format", "jsonl").out.splitlines()
    assert json.loads(lines[1]) == {"id": "b/y.png", "cluster": 1, "confidence": pytest.approx(0.8), "label": None,
                                    "class": None}
    assert_bad_input(cli("export", pred, "--format", "xml"), "--format xml")


@pytest.fixture
def scored(tmp_path):
    rng = np.random.RandomState(0)
    y = np.repeat(np.arange(3), 20)
    p = y.copy()
    p[rng.choice(60, 12, replace=False)] = rng.randint(0, 3, 12)
    ids = [f"img{i:03d}.png" for i in range(60)]
    return tmp_path, y, p, ids


def test_eval_joins_an_id_label_csv_with_class_names(cli, scored):
    from ccli.metrics import clustering_scores

    tmp, y, p, ids = scored
    pred = _predictions(tmp / "p.h5", p, ids=[f"cls/{i}" for i in ids])
    names = np.array(["cat", "dog", "eel"])
    order = np.random.RandomState(1).permutation(60)  # the CSV's rows in another order
    with open(tmp / "labels.csv", "w") as fh:
        fh.write("filename,label\n")
        for i in order:
            fh.write(f"{ids[i]},{names[y[i]]}\n")
    result = cli("eval", pred, "--labels", tmp / "labels.csv", "--json")
    assert result.code == 0, result.err
    got = json.loads(result.out)
    expected = clustering_scores(y, p)
    assert got["acc"] == pytest.approx(expected["acc"]) and got["nmi"] == pytest.approx(expected["nmi"])
    assert got["class_names"] == ["cat", "dog", "eel"] and set(got["mapping"].values()) == {"cat", "dog", "eel"}
    with open(tmp / "bad.csv", "w") as fh:
        fh.write("filename,label\n" + "".join(f"nope{i}.png,cat\n" for i in range(5)) + f"{ids[0]},dog\n")
    assert_bad_input(cli("eval", pred, "--labels", tmp / "bad.csv"), "bad.csv", "5 id(s)", "nope0.png")


def test_minus_one_is_unknown_never_an_extra_class(cli, scored):
    from ccli.metrics import clustering_scores

    tmp, y, p, _ = scored
    y_unknown = y.copy()
    y_unknown[:7] = -1
    np.save(tmp / "p.npy", p)
    np.save(tmp / "y.npy", y_unknown)
    result = cli("eval", tmp / "p.npy", "--labels", tmp / "y.npy", "--json")
    assert result.code == 0, result.err
    got = json.loads(result.out)
    expected = clustering_scores(y[7:], p[7:])
    assert got["n_classes"] == 3 and got["unknown_labels"] == 7 and got["n"] == 53
    assert got["acc"] == pytest.approx(expected["acc"]) and got["ari"] == pytest.approx(expected["ari"])
    assert "7 samples have an unknown label" in result.err


def test_over_clustering_note_and_majority_match(cli, scored):
    tmp, y, _, _ = scored
    p = y * 2 + (np.arange(60) % 2)  # 6 clusters, each pure, two per class
    np.save(tmp / "p6.npy", p)
    np.save(tmp / "y.npy", y)
    hung = json.loads(cli("eval", tmp / "p6.npy", "-l", tmp / "y.npy", "--json").out)
    assert hung["acc"] == pytest.approx(0.5) and "3 clusters unmatched" in hung["note"]
    major = cli("eval", tmp / "p6.npy", "-l", tmp / "y.npy", "--json", "--match", "majority")
    got = json.loads(major.out)
    assert got["acc"] == pytest.approx(1.0) and got["match"] == "majority" and "note" not in got
    assert got["mapping"] == {str(c): c // 2 for c in range(6)}
    assert_bad_input(cli("eval", tmp / "p6.npy", "-l", tmp / "y.npy", "--match", "best"), "--match best")


def test_eval_without_labels_gives_sizes_and_label_free_scores(cli, tmp_path):
    x, y = _blobs(4)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "p.npy", y)
    result = cli("eval", tmp_path / "p.npy", "--features", tmp_path / "x.npy", "--json")
    assert result.code == 0, result.err
    got = json.loads(result.out)
    assert got["cluster_sizes"] == {"0": 40, "1": 40, "2": 40}
    free = got["label_free"]
    assert free["silhouette"] == pytest.approx(silhouette_score(x, y), rel=1e-5)
    assert free["calinski_harabasz"] == pytest.approx(calinski_harabasz_score(x, y), rel=1e-5)
    assert free["davies_bouldin"] == pytest.approx(davies_bouldin_score(x, y), rel=1e-5)


def test_cache_ls_lists_runs_and_checkpoints_on_stdout_and_info_takes_them(cli, tmp_path):
    pre = cli("pretrain", "--data", "digits", "--preset", "digits", "--epochs", "1", "-q")
    assert pre.code == 0, pre.err
    checkpoint = pre.out.strip()
    x, y = _blobs(5)
    np.save(tmp_path / "x.npy", x)
    train = cli("train", "--method", "kmeans", "--features", tmp_path / "x.npy", "-k", "3", "--json")
    run_dir = json.loads(train.out)["run"]
    nb = cli("neighbors", tmp_path / "x.npy", "-k", "4", "-q").out.strip()
    graph = cli("graph", nb, "--knn", "4", "-q")
    assert graph.code == 0, graph.err
    listing = cli("cache", "ls")
    assert listing.code == 0 and "checkpoint" in listing.out and "simclr/small_cnn" in listing.out
    assert "data=digits" in listing.out and f"{len(x)}×{len(x)}" in listing.out  # graph rows: N × N
    rows = {e["kind"]: e for e in json.loads(cli("cache", "ls", "--json").out)}
    assert rows["checkpoint"]["path"] == checkpoint and rows["run"]["path"] == run_dir
    assert rows["run"]["method"] == "kmeans" and "features=" in rows["run"]["made_from"]
    assert rows["graph"]["shape"] == f"{len(x)}×{len(x)}"
    runs_only = json.loads(cli("cache", "ls", "--kind", "run", "--json").out)
    assert [e["kind"] for e in runs_only] == ["run"]
    by_folder = json.loads(cli("cache", "info", run_dir, "--json").out)
    by_prefix = json.loads(cli("cache", "info", rows["run"]["key"][:8], "--json").out)
    assert by_folder["key"] == by_prefix["key"] == rows["run"]["key"]
    assert by_folder["scores"]["cluster_sizes"] and by_folder["method"] == "kmeans"
    by_checkpoint = json.loads(cli("cache", "info", checkpoint, "--json").out)
    assert by_checkpoint["kind"] == "checkpoint" and by_checkpoint["made_from"] == "data=digits"
    assert_bad_input(cli("cache", "info", "zzzz"), "zzzz")


def test_bash_completes_option_values(tmp_path):
    import shutil
    import subprocess

    from ccli.cli.completion_scripts import render
    from ccli.methods.registry import method_names

    if not shutil.which("bash"):
        pytest.skip("bash not installed")
    script = tmp_path / "ccli.bash"
    script.write_text(render("bash"))
    probe = (
        f"source {script}\n"
        "COMP_WORDS=(ccli train --method cc --preset d); COMP_CWORD=5; _ccli; echo \"${COMPREPLY[*]}\"\n"
        "COMP_WORDS=(ccli train --method ''); COMP_CWORD=3; _ccli; echo \"${COMPREPLY[*]}\"\n"
        "COMP_WORDS=(ccli cache ls --kind ch); COMP_CWORD=4; _ccli; echo \"${COMPREPLY[*]}\"\n"
        "COMP_WORDS=(ccli eval x.h5 --match m); COMP_CWORD=4; _ccli; echo \"${COMPREPLY[*]}\"\n"
        "COMP_WORDS=(ccli completions z); COMP_CWORD=2; _ccli; echo \"${COMPREPLY[*]}\"\n"
    )
    out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == "digits"
    assert set(out[1].split()) == {m for m in method_names() if m != "pairtoy"}
    assert out[2:] == ["checkpoint", "majority", "zsh"]


def test_npz_spec_takes_a_bare_npy_of_images_and_names_features(cli, tmp_path):
    from ccli.data.sources import load_dataset

    images = np.random.RandomState(0).randint(0, 255, (6, 8, 8), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "feats.npy", np.zeros((6, 4), np.float32))
    ds = load_dataset(f"npz:{tmp_path / 'images.npy'}")
    assert ds.images.shape == (6, 8, 8, 1) and (ds.images[..., 0] == images).all() and (ds.labels == -1).all()
    assert_bad_input(cli("data", "info", f"npz:{tmp_path / 'feats.npy'}"), "feats.npy", "looks like features",
                     "--features")
    (tmp_path / "model.pt").write_bytes(b"PK\x03\x04rest")
    assert_bad_input(cli("data", "info", f"h5:{tmp_path / 'model.pt'}"), "PyTorch checkpoint")
