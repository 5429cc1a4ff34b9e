"""Issue 14's quality bar: the path a new user takes with their own files, end to end on real data.

scikit-learn's digits are written out as PNG files (a flat folder, and one folder per class), then:
pretrain and train with the auto preset (no preset named), export the assignments to CSV, eval
with a filename,label CSV (with some labels -1 = unknown), and the exported rows are checked
against predictions.h5 row by row.
"""

from __future__ import annotations

import csv
import json

import h5py
import numpy as np
import pytest

from tests.conftest import assert_bad_input

N_PER_CLASS = 30  # 300 images: small enough for a fast default test run


@pytest.fixture(scope="module")
def pngs(tmp_path_factory):
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    root = tmp_path_factory.mktemp("user")
    flat, classes = root / "flat", root / "classes"
    flat.mkdir()
    picked = np.concatenate([np.flatnonzero(digits.target == c)[:N_PER_CLASS] for c in range(10)])
    names = {}
    for i in picked:
        image = Image.fromarray(np.rint(digits.images[i] * 255 / 16).astype(np.uint8), mode="L")
        name = f"scan_{i:04d}.png"
        image.save(flat / name)
        folder = classes / f"digit{digits.target[i]}"
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / name)
        names[name] = int(digits.target[i])
    return root, flat, classes, names


def _read_h5(path):
    with h5py.File(path) as f:
        return {name: f[name][()] for name in f}, dict(f.attrs)


def test_new_user_path_flat_folder(cli, pngs, tmp_path):
    root, flat, _, names = pngs
    pre = cli("pretrain", "--data", f"folder:{flat}", "--epochs", "1")
    assert pre.code == 0, pre.err
    # grayscale PNGs stay 1-channel, and auto starts from the digits recipe (--epochs 1 is the user's)
    said = " ".join(pre.err.split())
    assert "preset auto: 300 grayscale 8×8 images on cpu → the digits recipe (tuned on 1,797 8×8 digits): " in said
    # SimCLR's batch 256 would make 1 update per epoch on 300 images: 32 (9 updates)
    assert ("batches of 32 images (its 256 would make only 1 update per epoch on 300 images; 32 makes 9); "
            "images at their own 8 px (--preset NAME to choose another)") in said
    checkpoint = pre.out.strip()
    train = cli("train", "--method", "cc", "--data", f"folder:{flat}", "--checkpoint", checkpoint, "-k", "10",
                "--epochs", "2", "--set", "eval_every=0")
    assert train.code == 0, train.err
    assert "preset auto:" in train.err and "cc: " in train.err and "clusters, sizes" in train.err
    predictions = train.out.strip()
    # the last line says where each file's cluster is: the export command, run as printed
    said = " ".join(train.err.split())
    assert f"clusters per file: ccli export {predictions} -o clusters.csv (one row per file: its path in the folder " \
           "and its cluster)" in said
    run_dir = __import__("pathlib").Path(predictions).parent
    scores = json.loads((run_dir / "scores.json").read_text())  # written although the folder has no labels
    assert scores["n"] == 300 and sum(scores["cluster_sizes"].values()) == 300 and "acc" not in scores

    exported = tmp_path / "assignments.csv"
    result = cli("export", predictions, "-o", exported)
    assert result.code == 0 and result.out.strip() == str(exported)
    rows = list(csv.DictReader(open(exported)))
    data, _ = _read_h5(predictions)
    assert len(rows) == 300 == len(data["labels"])
    for i, row in enumerate(rows):  # row by row: the file name, its cluster, its confidence
        assert row["id"] == data["ids"][i].decode()
        assert int(row["cluster"]) == int(data["labels"][i])
        assert float(row["confidence"]) == pytest.approx(float(data["probs"][i].max()), abs=1e-6)
    assert sorted(r["id"] for r in rows) == sorted(names)
    assert "label" not in rows[0]  # a flat folder has no labels to export

    # The user's labels, in their own order, some unknown.
    order = sorted(names, reverse=True)
    unknown = set(order[:25])
    with open(tmp_path / "labels.csv", "w") as fh:
        fh.write("filename,label\n")
        for name in order:
            fh.write(f"{name},{-1 if name in unknown else names[name]}\n")
    scored = cli("eval", predictions, "--labels", tmp_path / "labels.csv", "--json")
    assert scored.code == 0, scored.err
    got = json.loads(scored.out)
    from ccli.metrics import clustering_scores

    truth = np.array([-1 if r["id"] in unknown else names[r["id"]] for r in rows])
    known = truth >= 0
    expected = clustering_scores(truth[known], np.array([int(r["cluster"]) for r in rows])[known])
    assert got["unknown_labels"] == 25 and got["n"] == 275 and got["n_classes"] == 10
    assert got["acc"] == pytest.approx(expected["acc"]) and got["nmi"] == pytest.approx(expected["nmi"])
    assert "25 samples have an unknown label" in scored.err

    with open(tmp_path / "typo.csv", "w") as fh:
        fh.write("filename,label\n" + "".join(f"scan_{i:04d}.jpg,1\n" for i in range(4)))
    assert_bad_input(cli("eval", predictions, "--labels", tmp_path / "typo.csv"), "4 id(s)", "scan_0000.jpg")


def test_new_user_path_class_folders(cli, pngs, tmp_path):
    root, _, classes, names = pngs
    train = cli("train", "--method", "cc", "--data", f"folder:{classes}", "--epochs", "2", "--set", "eval_every=0",
                "--json")
    assert train.code == 0, train.err
    assert "preset auto: 300 grayscale 8×8 images on cpu → the digits recipe" in " ".join(train.err.split())
    payload = json.loads(train.out)
    import yaml

    config = yaml.safe_load((__import__("pathlib").Path(payload["run"]) / "config.yaml").read_text())["config"]
    # the cc digits recipe's values, not CC's ImageNet defaults; --epochs 2 (the user's) is kept; its
    # batch 128 would give 2 steps per epoch on 300 images: 32 (≥ 32 rows, 9 steps)
    assert config["backbone"] == "small_cnn" and config["image_size"] is None
    assert config["engine"]["lr"] == 1.0e-3 and config["engine"]["batch_size"] == 32
    assert config["engine"]["epochs"] == 2 and config["crop_scale"] == [0.3, 1.0] and config["flip_p"] == 0.0
    data, attrs = _read_h5(payload["predictions"])
    assert json.loads(attrs["class_names"]) == [f"digit{c}" for c in range(10)]
    ids = [i.decode() for i in data["ids"]]
    assert ids[0].startswith("digit0/") and all(names[i.split("/")[1]] == int(i[5]) for i in ids)
    assert payload["scores"]["class_names"][0] == "digit0" and payload["scores"]["n"] == 300

    exported = tmp_path / "a.csv"
    assert cli("export", payload["predictions"], "-o", exported).code == 0
    rows = list(csv.DictReader(open(exported)))
    for i, row in enumerate(rows):
        assert row["id"] == ids[i] and int(row["cluster"]) == int(data["labels"][i])
        assert row["class"] == row["id"].split("/")[0] and int(row["label"]) == int(data["targets"][i])
    # The labels as a dataset spec, joined by file path, score exactly what the stored targets score.
    by_spec = json.loads(cli("eval", payload["predictions"], "--labels", f"folder:{classes}", "--json").out)
    stored = json.loads(cli("eval", payload["predictions"], "--json").out)
    assert by_spec["acc"] == stored["acc"] and by_spec["mapping"] == stored["mapping"]


def test_kmeans_on_colour_files_names_the_pretraining_recipes(cli, tmp_path):
    # auto has no grayscale recipe for colour images, and kmeans learns no features by itself: the
    # refusal names the recipes there are, and nothing is written
    from PIL import Image

    folder = tmp_path / "colour"
    folder.mkdir()
    for i in range(12):
        Image.fromarray(np.full((8, 8, 3), (20 * i, 5, 200), np.uint8), mode="RGB").save(folder / f"c{i:02d}.png")
    result = cli("train", "--method", "kmeans", "--data", f"folder:{folder}", "-k", "2")
    assert_bad_input(result, f"kmeans on --data folder:{folder} needs features",
                     "--set pretrain_preset=NAME (one of simclr-cifar10", "moby-digits")
    assert not (tmp_path / "cache" / "runs").exists()
