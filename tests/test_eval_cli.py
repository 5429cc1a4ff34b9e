"""`ccli eval` end to end: inputs of every supported form, JSON values, and every bad input."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from ccli.store import ArtifactWriter, content_key
from tests.conftest import assert_bad_input


@pytest.fixture
def labelled(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 500) + 3  # values 3..12, not 0..K-1
    p = np.where(rng.random(500) < 0.75, y * 2, rng.integers(0, 14, 500))
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "p.npy", p)
    return tmp_path, y, p


def write_predictions(path, labels, targets=None, probs=None, kind="predictions"):
    config = {"method": "test"}
    with ArtifactWriter(path, kind, content_key(kind, config), config) as w:
        if kind == "predictions":
            w.write("labels", labels)
            w.write("index", np.arange(len(labels)))
            if targets is not None:
                w.write("targets", targets)
            if probs is not None:
                w.write("probs", probs)
        else:
            w.write("features", np.zeros((len(labels), 2), np.float32))
            w.write("labels", labels)
            w.write("index", np.arange(len(labels)))
    return path


def test_json_matches_sklearn(cli, labelled):
    tmp, y, p = labelled
    result = cli("eval", tmp / "p.npy", "--labels", tmp / "y.npy", "--json")
    assert result.code == 0, result.err
    scores = json.loads(result.out)
    assert scores["nmi"] == normalized_mutual_info_score(y, p)
    assert scores["ari"] == adjusted_rand_score(y, p)
    assert scores["n"] == 500 and scores["n_classes"] == 10
    assert "ACC" in result.err  # the table goes to stderr


def test_text_csv_and_artifact_inputs_agree(cli, labelled):
    tmp, y, p = labelled
    np.savetxt(tmp / "p.txt", p, fmt="%d")
    (tmp / "y.csv").write_text("label\n" + "\n".join(map(str, y)) + "\n")
    write_predictions(tmp / "pred.h5", p, targets=y)
    results = [
        json.loads(cli("eval", tmp / "p.txt", "-l", tmp / "y.csv", "--json", "-q").out),
        json.loads(cli("eval", tmp / "pred.h5", "--json", "-q").out),
        json.loads(cli("eval", tmp / "pred.h5", "--labels", tmp / "y.npy", "--json", "-q").out),
    ]
    for r in results:
        for key in ("acc", "nmi", "ari", "precision", "recall", "f1"):
            assert r[key] == results[0][key]


def test_probabilities_npy_is_argmaxed_and_features_artifact_gives_labels(cli, labelled):
    tmp, y, p = labelled
    codes = np.unique(p, return_inverse=True)[1]
    probs = np.eye(codes.max() + 1)[codes] * 0.9 + 0.005
    np.save(tmp / "probs.npy", probs)
    write_predictions(tmp / "feats.h5", y, kind="features")
    r = json.loads(cli("eval", tmp / "probs.npy", "--labels", tmp / "feats.h5", "--json", "-q").out)
    assert r["nmi"] == normalized_mutual_info_score(y, p)


def test_unknown_targets_in_artifact_are_skipped(cli, tmp_path):
    y = np.array([0, 0, 1, 1, -1, -1])
    p = np.array([1, 1, 0, 0, 0, 1])
    write_predictions(tmp_path / "pred.h5", p, targets=y)
    result = cli("eval", tmp_path / "pred.h5", "--json")
    assert result.code == 0
    r = json.loads(result.out)
    assert r["n"] == 4 and r["acc"] == 1.0
    assert "not scored" in result.err


def test_pairwise_flag(cli, labelled):
    tmp, y, p = labelled
    r = json.loads(cli("eval", tmp / "p.npy", "-l", tmp / "y.npy", "--pairwise", "--json", "-q").out)
    assert set(r["pairwise"]) == {"precision", "recall", "f1"}
    assert 0 < r["pairwise"]["precision"] <= 1


def test_eval_does_not_import_torch_or_faiss(tmp_path, labelled):
    import subprocess
    import sys

    tmp, _, _ = labelled
    code = (
        "import sys\n"
        "from ccli.cli.main import run\n"
        "try:\n"
        f"    run(['eval', r'{tmp / 'p.npy'}', '--labels', r'{tmp / 'y.npy'}', '-q'])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0\n"
        "assert 'torch' not in sys.modules and 'faiss' not in sys.modules, 'heavy import'\n"
        "run(['cache', 'ls', '--cache-dir', r'" + str(tmp / "c") + "'])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run(
        [sys.executable, "-c", "import sys\nfrom ccli.cli.main import build_app\nbuild_app()\n"
         "assert 'torch' not in sys.modules and 'faiss' not in sys.modules"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr


# -- bad input: exit 2, one sentence naming the file/option, nothing on stdout ----------------
def test_missing_file(cli, labelled):
    tmp, _, _ = labelled
    assert_bad_input(cli("eval", tmp / "nope.npy", "-l", tmp / "y.npy"), "nope.npy", "does not exist")
    assert_bad_input(cli("eval", tmp / "p.npy", "-l", tmp / "nope.npy"), "--labels", "nope.npy")


def test_unreadable_file(cli, labelled):
    import os

    tmp, _, _ = labelled
    if os.geteuid() == 0:
        # root reads everything; a directory stands in for an unreadable path
        assert_bad_input(cli("eval", tmp, "-l", tmp / "y.npy"), "is a directory")
    else:
        (tmp / "p.npy").chmod(0)
        assert_bad_input(cli("eval", tmp / "p.npy", "-l", tmp / "y.npy"), "p.npy")


def test_length_mismatch(cli, labelled):
    tmp, y, _ = labelled
    np.save(tmp / "short.npy", y[:-1])
    assert_bad_input(cli("eval", tmp / "p.npy", "-l", tmp / "short.npy"), "500", "499")


def test_empty_inputs(cli, tmp_path):
    np.save(tmp_path / "empty.npy", np.array([], dtype=np.int64))
    (tmp_path / "empty.txt").write_text("")
    np.save(tmp_path / "y.npy", np.array([1, 2]))
    assert_bad_input(cli("eval", tmp_path / "empty.npy", "-l", tmp_path / "y.npy"), "empty.npy", "empty")
    assert_bad_input(cli("eval", tmp_path / "empty.txt", "-l", tmp_path / "y.npy"), "empty.txt", "empty")


def test_nan_and_non_integer_labels(cli, labelled):
    tmp, y, _ = labelled
    with_nan = y.astype(float)
    with_nan[[3, 7]] = np.nan
    np.save(tmp / "nan.npy", with_nan)
    np.save(tmp / "frac.npy", y + 0.25)
    (tmp / "words.txt").write_text("1\n2\nthree\n")
    assert_bad_input(cli("eval", tmp / "p.npy", "-l", tmp / "nan.npy"), "--labels", "2 NaN")
    assert_bad_input(cli("eval", tmp / "p.npy", "-l", tmp / "frac.npy"), "non-integer")
    assert_bad_input(cli("eval", tmp / "words.txt", "-l", tmp / "y.npy"), "words.txt", "not a number")


def test_wrong_kind_newer_schema_and_corrupt_hdf5(cli, labelled, tmp_path):
    tmp, y, p = labelled
    write_predictions(tmp / "feats.h5", y, kind="features")
    assert_bad_input(cli("eval", tmp / "feats.h5"), "feats.h5", "features artifact", "predictions")

    newer = write_predictions(tmp / "newer.h5", p, targets=y)
    with h5py.File(newer, "a") as f:
        f.attrs["schema_version"] = 99
    assert_bad_input(cli("eval", newer), "newer.h5", "schema version 99")

    good = write_predictions(tmp / "good.h5", p, targets=y)
    data = good.read_bytes()
    (tmp / "trunc.h5").write_bytes(data[: len(data) // 3])
    assert_bad_input(cli("eval", tmp / "trunc.h5"), "trunc.h5", "truncated or corrupt")
    (tmp / "garbage.h5").write_bytes(b"not hdf5 at all" * 10)
    assert_bad_input(cli("eval", tmp / "garbage.h5"), "garbage.h5")

    with h5py.File(tmp / "plain.h5", "w") as f:
        f["labels"] = p
    assert_bad_input(cli("eval", tmp / "plain.h5"), "plain.h5", "not a ccli artifact")


def test_artifact_without_labels_reports_cluster_sizes_and_asks_for_labels(cli, tmp_path):
    # Issue 14: an unlabelled run still says something (cluster sizes), and points at --labels.
    write_predictions(tmp_path / "pred.h5", np.array([0, 1, 1]))
    write_predictions(tmp_path / "nolab.h5", np.array([0, 1, 1]), targets=np.array([-1, -1, -1]))
    for name in ("pred.h5", "nolab.h5"):
        result = cli("eval", tmp_path / name, "--json")
        assert result.code == 0, result.err
        payload = json.loads(result.out)
        assert payload["cluster_sizes"] == {"0": 1, "1": 2} and payload["labels"] is None and "acc" not in payload
        assert "--labels" in result.err


def test_unsupported_extension_and_multi_column_text(cli, labelled):
    tmp, _, _ = labelled
    (tmp / "p.json").write_text("[1, 2]")
    (tmp / "two.csv").write_text("1,2\n3,4\n")
    assert_bad_input(cli("eval", tmp / "p.json", "-l", tmp / "y.npy"), "p.json", "extension")
    assert_bad_input(cli("eval", tmp / "two.csv", "-l", tmp / "y.npy"), "two.csv", "2 columns")


def test_usage_errors_exit_2(cli):
    result = cli("eval")
    assert result.code == 2 and "Missing argument" in result.err
    assert cli("no-such-command").code == 2


# -- ccli data: dataset specs at the command line -------------------------------------------------
def test_data_info_digits_json(cli):
    from sklearn.datasets import load_digits

    result = cli("data", "info", "digits", "--json")
    assert result.code == 0, result.err
    info = json.loads(result.out)
    target = load_digits().target
    assert info["n"] == len(target) and info["image_shape"] == [8, 8, 1]
    assert info["class_sizes"] == np.bincount(target).tolist()


def test_data_bad_specs(cli, tmp_path):
    assert_bad_input(cli("data", "info", "bogus:/x"), "bogus", "valid kinds")
    assert_bad_input(cli("data", "info", f"cifar10:{tmp_path}"), "data_batch_1")
    assert_bad_input(cli("data", "info", "digits", "--split", "test"), "digits")
