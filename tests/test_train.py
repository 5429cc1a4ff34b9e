"""`ccli train`: the registry, kmeans, tiny cc/dcacn runs on digits, chaining into eval, bad input."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from ccli.store import ArtifactWriter
from tests.conftest import assert_bad_input


def write_features(path, x, labels):
    with ArtifactWriter(path, "features", "test-features", {"test": True}) as w:
        w.write("features", np.asarray(x, dtype=np.float32))
        w.write("labels", np.asarray(labels, dtype=np.int64))
        w.write("index", np.arange(len(x), dtype=np.int64))
    return path


@pytest.fixture
def blobs(tmp_path):
    from sklearn.datasets import make_blobs

    x, y = make_blobs(n_samples=400, n_features=12, centers=6, cluster_std=0.6, random_state=3)
    return write_features(tmp_path / "blobs.h5", x, y), x, y


# --- registry -------------------------------------------------------------------------------


def test_list_shows_every_method_and_its_inputs(cli):
    result = cli("train", "--list", "--json")
    assert result.code == 0, result.err
    rows = {row["name"]: row for row in json.loads(result.out)}
    assert {"kmeans", "cc", "dcacn"} <= set(rows)
    assert rows["kmeans"]["requires_one_of"] == [["features", "images"]]
    assert rows["cc"]["consumes"] == ["images", "checkpoint"]
    assert rows["dcacn"]["options"] == ["--data", "--checkpoint"]
    table = cli("train", "--list")
    assert table.code == 0 and table.out == ""
    for name in rows:
        assert name in table.err


def test_listing_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys; from ccli.methods import registry; registry.listing(); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


# --- kmeans ---------------------------------------------------------------------------------


def test_kmeans_matches_sklearn_on_blobs(cli, blobs, tmp_path):
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    path, x, y = blobs
    reference = KMeans(6, n_init=10, random_state=0).fit_predict(x)
    for backend in ("faiss", "sklearn"):
        out = tmp_path / f"run-{backend}"
        result = cli("train", "--method", "kmeans", "--features", path, "-o", out, "-q",
                     "--set", f"backend={backend}", "--set", "normalize=false")
        assert result.code == 0, result.err
        assert result.out.strip() == str(out / "predictions.h5")
        with h5py.File(out / "predictions.h5") as f:
            labels = f["labels"][()]
            assert f.attrs["kind"] == "predictions"
            assert (f["targets"][()] == y).all()
        # Same partition as scikit-learn up to renaming, and both recover the blobs.
        assert adjusted_rand_score(reference, labels) == pytest.approx(1.0)
        scores = json.loads((out / "scores.json").read_text())
        assert scores["acc"] == pytest.approx(1.0) and scores["n_clusters"] == 6


def test_kmeans_rerun_is_a_cache_hit_and_force_recomputes(cli, blobs, tmp_path):
    path, _, _ = blobs
    first = cli("train", "--method", "kmeans", "--features", path, "-q")
    assert first.code == 0, first.err
    pred = first.out.strip()
    assert "/runs/kmeans-" in pred
    mtime = (tmp_path / "cache").stat().st_mtime, __import__("os").stat(pred).st_mtime
    again = cli("train", "--method", "kmeans", "--features", path)
    assert again.out.strip() == pred and "cached" in again.err
    assert __import__("os").stat(pred).st_mtime == mtime[1]
    forced = cli("train", "--method", "kmeans", "--features", path, "--force", "-q")
    assert forced.out.strip() == pred and __import__("os").stat(pred).st_mtime >= mtime[1]
    lines = (__import__("pathlib").Path(pred).parent / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[-1])["final"] is True  # --force started the log afresh


def test_chaining_into_eval(cli, blobs):
    path, _, _ = blobs
    trained = cli("train", "--method", "kmeans", "--features", path, "--k", "6")
    assert trained.code == 0, trained.err
    assert len(trained.out.splitlines()) == 1  # stdout is exactly the predictions path
    scored = cli("eval", trained.out.strip(), "--json", "-q")
    assert scored.code == 0, scored.err
    assert json.loads(scored.out)["acc"] == pytest.approx(1.0)


# --- bad input ------------------------------------------------------------------------------


def _nothing_written(tmp_path, out):
    assert not out.exists()
    assert not (tmp_path / "cache" / "runs").exists()


def test_unknown_method_lists_the_valid_ones(cli, tmp_path):
    out = tmp_path / "run"
    result = cli("train", "--method", "kmeanz", "--data", "digits", "-o", out)
    assert_bad_input(result, "kmeanz", "kmeans", "cc", "dcacn")
    _nothing_written(tmp_path, out)


@pytest.mark.parametrize(
    "method, args, needle",
    [
        ("cc", ["--features", "F"], "--features cannot be used by method cc"),
        ("dcacn", ["--data", "digits", "--neighbors", "F"], "--neighbors cannot be used by method dcacn"),
        ("kmeans", ["--features", "F", "--graph", "F"], "--graph cannot be used by method kmeans"),
        ("cc", [], "method cc needs --data"),
        ("kmeans", [], "--features or --data"),
    ],
)
def test_input_kind_the_method_cannot_use(cli, blobs, tmp_path, method, args, needle):
    path, _, _ = blobs
    out = tmp_path / "run"
    args = [str(path) if a == "F" else a for a in args]
    assert_bad_input(cli("train", "--method", method, *args, "-o", out), needle)
    _nothing_written(tmp_path, out)


@pytest.mark.parametrize("k, needle", [("1", "at least 2"), ("0", "at least 2"), ("401", "larger than the 400")])
def test_bad_number_of_clusters_on_features(cli, blobs, tmp_path, k, needle):
    path, _, _ = blobs
    out = tmp_path / "run"
    # --k 0 means "use the class count" in presets, so 0 given explicitly must not slip through.
    assert_bad_input(cli("train", "--method", "kmeans", "--features", path, "--k", k, "-o", out), needle)
    _nothing_written(tmp_path, out)


@pytest.mark.parametrize("method", ["cc", "dcacn"])
def test_bad_number_of_clusters_on_images(cli, tmp_path, method):
    out = tmp_path / "run"
    assert_bad_input(cli("train", "--method", method, "--data", "digits", "--k", "1", "-o", out), "--k 1")
    assert_bad_input(cli("train", "--method", method, "--data", "digits", "--k", "5000", "-o", out),
                     "larger than the 1,797 samples")
    _nothing_written(tmp_path, out)


def test_unknown_preset_and_set_key(cli, tmp_path):
    out = tmp_path / "run"
    assert_bad_input(cli("train", "--method", "cc", "--data", "digits", "--preset", "nope", "-o", out), "nope")
    assert_bad_input(cli("train", "--method", "cc", "--data", "digits", "--set", "tua=0.5", "-o", out), "tua")
    assert_bad_input(cli("train", "--method", "kmeans", "--features", "x.h5", "--epochs", "3", "-o", out),
                     "--epochs does not apply")
    _nothing_written(tmp_path, out)


def test_features_file_that_is_not_features(cli, tmp_path):
    out = tmp_path / "run"
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    assert_bad_input(cli("train", "--method", "kmeans", "--features", tmp_path / "junk.h5", "-o", out), "junk.h5")
    assert_bad_input(cli("train", "--method", "kmeans", "--features", tmp_path / "missing.h5", "-o", out),
                     "does not exist")
    _nothing_written(tmp_path, out)
