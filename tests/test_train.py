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
    assert table.code == 0 and table.err == ""
    for name in rows:  # the table is on stdout, so `ccli train --list | grep` works (issue 14)
        assert name in table.out


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


# --- cc / dcacn on digits -------------------------------------------------------------------

TINY = ["--data", "digits", "--preset", "digits", "--epochs", "2", "-q"]


def _read_run(run_dir):
    with h5py.File(run_dir / "predictions.h5") as f:
        return {name: f[name][()] for name in ("labels", "probs", "targets", "index") if name in f}


@pytest.mark.parametrize("method", ["cc", "dcacn"])
def test_tiny_run_writes_a_consistent_run_folder(cli, tmp_path, method):
    from ccli.metrics import clustering_scores

    out = tmp_path / method
    result = cli("train", "--method", method, *TINY, "-o", out)
    assert result.code == 0, result.err
    assert result.out == f"{out / 'predictions.h5'}\n"
    assert {"config.yaml", "checkpoint-cluster.pt", "run.json", "metrics.jsonl", "predictions.h5", "scores.json"} <= {
        p.name for p in out.iterdir()}
    run = _read_run(out)
    assert run["labels"].shape == (1797,) and run["probs"].shape == (1797, 10)
    np.testing.assert_allclose(run["probs"].sum(1), 1.0, atol=1e-5)
    assert (run["labels"] == run["probs"].argmax(1)).all()
    assert (run["index"] == np.arange(1797)).all() and run["targets"].min() == 0
    scores = json.loads((out / "scores.json").read_text())
    expected = json.loads(json.dumps(clustering_scores(run["targets"], run["labels"])))
    assert {key: scores[key] for key in expected} == expected  # plus mapping, cluster sizes (issue 14)
    assert sum(scores["cluster_sizes"].values()) == 1797
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines[:-1]] == [1, 2]
    assert all("instance" in line and "cluster" in line for line in lines[:-1])
    assert lines[-1]["final"] is True and lines[-1]["acc"] == scores["acc"]
    import yaml

    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["method"] == method and config["num_clusters"] == 10 and config["config"]["engine"]["epochs"] == 2
    if method == "dcacn":
        assert config["config"]["backbone"] == "cbam_small_cnn" and config["config"]["cluster_mode"] == "column"


def test_train_chains_into_eval_through_a_shell(tmp_path):
    import subprocess
    import sys

    env = {**__import__("os").environ, "CCLI_CACHE": str(tmp_path / "cache")}
    train = subprocess.run([sys.executable, "-m", "ccli", "train", "--method", "cc", *TINY],
                           capture_output=True, text=True, env=env)
    assert train.returncode == 0, train.stderr
    lines = train.stdout.splitlines()
    assert len(lines) == 1 and lines[0].endswith("predictions.h5") and "/runs/cc-" in lines[0]
    scored = subprocess.run([sys.executable, "-m", "ccli", "eval", lines[0], "--json"],
                            capture_output=True, text=True, env=env)
    assert scored.returncode == 0, scored.stderr
    stored = json.loads((__import__("pathlib").Path(lines[0]).parent / "scores.json").read_text())
    assert json.loads(scored.stdout)["acc"] == stored["acc"]


@pytest.mark.parametrize("method", ["cc", "dcacn"])
def test_epoch_records_carry_the_cluster_heads_scores(cli, tmp_path, method):
    out = tmp_path / method
    result = cli("train", "--method", method, *TINY[:-1], "--epochs", "3", "--set", "eval_every=2", "-q", "-o", out)
    assert result.code == 0, result.err
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epochs = [line for line in lines if "final" not in line]
    # every eval_every-th epoch and the last one
    assert [("acc" in line) for line in epochs] == [False, True, True]
    for line in epochs[1:]:
        assert {"nmi", "ari"} <= set(line)
        assert 0.0 <= line["acc"] <= 1.0 and 0.0 <= line["nmi"] <= 1.0 and -0.5 <= line["ari"] <= 1.0
    scored = cli("eval", out / "predictions.h5", "--json")
    assert scored.code == 0, scored.err
    final = json.loads(scored.out)
    for key in ("acc", "nmi", "ari"):
        assert epochs[-1][key] == pytest.approx(final[key], abs=1e-12)


def test_eval_every_zero_writes_no_cluster_scores(cli, tmp_path):
    out = tmp_path / "run"
    assert cli("train", "--method", "cc", *TINY, "--set", "eval_every=0", "-o", out).code == 0
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert not any("acc" in line for line in lines if "final" not in line)
    assert "acc" in lines[-1]  # the final record still scores the predictions


def test_interrupted_run_resumes_from_its_checkpoint(cli, tmp_path):
    out = tmp_path / "run"
    assert cli("train", "--method", "cc", *TINY, "-o", out).code == 0
    first = _read_run(out)
    # As if the process died after the last checkpoint but before the predictions were written.
    (out / "predictions.h5").unlink()
    result = cli("train", "--method", "cc", *TINY[:-1], "-o", out)
    assert result.code == 0, result.err
    assert "stage cluster is complete" in result.err
    again = _read_run(out)
    assert (again["labels"] == first["labels"]).all()
    np.testing.assert_allclose(again["probs"], first["probs"], atol=1e-6)
    # The resumed process trains nothing and predicts afresh from the checkpoint; the last epoch's
    # record, written by the first process's in-training pass, scores the same labels.
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    last_epoch = [line for line in lines if "final" not in line][-1]
    stored = json.loads((out / "scores.json").read_text())
    assert last_epoch["epoch"] == 2 and last_epoch["acc"] == pytest.approx(stored["acc"], abs=1e-12)


@pytest.fixture(scope="module")
def small_cnn_checkpoint(tmp_path_factory):
    """A 1-epoch `ccli pretrain` checkpoint of the plain small CNN on digits."""
    from ccli.config import resolve_config
    from ccli.methods.pretrain import PretrainConfig, pretrain

    folder = tmp_path_factory.mktemp("pretrain")
    config = resolve_config(PretrainConfig, "pretrain", "simclr-digits", ["epochs=1", "knn_every=0"])
    return pretrain(config, "digits", out=folder / "small.pt").checkpoint


def test_checkpoint_with_another_backbone_is_bad_input(cli, tmp_path, small_cnn_checkpoint):
    out = tmp_path / "run"
    # dcacn's digits preset builds the CBAM small CNN; the checkpoint holds the plain one.
    result = cli("train", "--method", "dcacn", *TINY, "--checkpoint", small_cnn_checkpoint, "-o", out)
    assert_bad_input(result, "small_cnn", "cbam_small_cnn", "--checkpoint")
    assert_bad_input(cli("train", "--method", "cc", *TINY, "--checkpoint", small_cnn_checkpoint, "--set",
                         "backbone=resnet18", "-o", out), "resnet18")
    _nothing_written(tmp_path, out)


def test_cc_starts_from_a_matching_checkpoint(cli, tmp_path, small_cnn_checkpoint):
    import torch

    out = tmp_path / "run"
    result = cli("train", "--method", "cc", *TINY, "--epochs", "1", "--checkpoint", small_cnn_checkpoint, "-o", out)
    assert result.code == 0, result.err
    state = torch.load(out / "checkpoint-cluster.pt", map_location="cpu", weights_only=True)
    assert state["start_checkpoint"]["path"] == str(small_cnn_checkpoint)
    assert state["backbone"]["name"] == "small_cnn" and state["kind"] == "cluster"


def test_kmeans_from_images_pretrains_and_embeds_through_the_cache(cli, tmp_path):
    recipe = tmp_path / "tiny-pretrain.yaml"
    recipe.write_text("method: simclr\nbackbone: small_cnn\nepochs: 1\noptimizer: adam\nlr: 1.0e-3\n"
                      "knn_every: 0\ncrop_scale: [0.5, 1.0]\nflip_p: 0.0\n")
    args = ["train", "--method", "kmeans", "--data", "digits", "--set", f"pretrain_preset={recipe}", "-q"]
    first = cli(*args)
    assert first.code == 0, first.err
    run = _read_run(__import__("pathlib").Path(first.out.strip()).parent)
    assert run["labels"].shape == (1797,) and len(np.unique(run["labels"])) == 10
    assert (tmp_path / "cache" / "features").is_dir() and any((tmp_path / "cache" / "runs").glob("pretrain-*"))
    assert cli(*args).out == first.out  # the whole chain is a cache hit the second time


# --- CBAM backbones -------------------------------------------------------------------------


def test_cbam_resnet34_matches_the_spec():
    import torch

    from ccli.models import build_backbone, count_parameters
    from ccli.models.cbam import CBAM, CBAMBasicBlock

    model = build_backbone("cbam_resnet34-imagenet", 3, 224)
    blocks = [m for m in model.modules() if isinstance(m, CBAMBasicBlock)]
    assert len(blocks) == 16 and all(isinstance(b.cbam, CBAM) for b in blocks)  # [3, 4, 6, 3]
    assert count_parameters(model) == 21_447_468  # dcacn.md §3.1: 21,284,672 + 162,796 for 16 CBAMs
    plain = build_backbone("resnet34-imagenet", 3, 224)
    assert count_parameters(plain) == 21_284_672
    # Channel attention then spatial attention, one gate per channel and one map per position.
    cbam = blocks[0].cbam.eval()
    x = torch.randn(2, 64, 14, 14)
    assert cbam.channel(x).shape == (2, 64, 1, 1)
    assert cbam.spatial(x).shape == (2, 1, 14, 14) and cbam.spatial.conv.kernel_size == (7, 7)
    expected = cbam.spatial(cbam.channel(x) * x) * (cbam.channel(x) * x)
    torch.testing.assert_close(cbam(x), expected)
    for size in (32, 96):
        assert model(torch.randn(2, 3, size, size)).shape == (2, 512)


def test_cbam_small_cnn_is_the_small_cnn_plus_attention():
    from ccli.models import build_backbone, count_parameters
    from ccli.models.cbam import CBAM

    plain, cbam = build_backbone("small_cnn", 1, 28), build_backbone("cbam_small_cnn", 1, 28)
    attention = sum(count_parameters(m) for m in cbam.modules() if isinstance(m, CBAM))
    assert count_parameters(cbam) - attention == count_parameters(plain)
    assert sum(isinstance(m, CBAM) for m in cbam.modules()) == 3 and cbam.out_dim == plain.out_dim
