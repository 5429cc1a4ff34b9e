"""scan and scan+ (issue 10): losses, head selection, self-labelling, bad input, K = 200, the cached chain."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from conftest import assert_bad_input
from ccli.store import ArtifactWriter


# --- losses ---------------------------------------------------------------------------------


def test_scan_loss_over_a_table_is_eq_14_15_by_hand():
    from ccli.losses.scan import scan_loss_over_table

    probs = torch.tensor([[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]])
    table = torch.tensor([[1, -1], [0, 2], [1, 0]])
    # pairs (0,1) .5, (1,0) .5, (1,2) .26, (2,1) .26, (2,0) .5; the −1 is padding
    consistency = -(3 * math.log(0.5) + 2 * math.log(0.26)) / 5
    mean = [1.6 / 3, 1.4 / 3]
    entropy = -sum(m * math.log(m) for m in mean)
    assert float(scan_loss_over_table(probs, table, 2.0)) == pytest.approx(consistency - 2.0 * entropy, abs=1e-6)


def test_scan_batch_loss_matches_the_table_form_for_one_neighbour_each():
    from ccli.losses.scan import scan_loss, scan_loss_over_table

    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 1.0, 3.0], [-2.0, 0.5, 0.0]])
    partner = torch.tensor([1, 0, 3, 2])
    batch = scan_loss(logits, logits[partner], 5.0)
    full = scan_loss_over_table(torch.softmax(logits, 1), partner[:, None], 5.0)
    assert float(batch) == pytest.approx(float(full), abs=1e-6)


def test_self_label_loss_masks_unconfident_samples_and_balances_classes_by_hand():
    from ccli.losses.self_label import balance_weights, self_label_loss

    def log_probs(rows):
        return torch.log(torch.tensor(rows))

    weak = log_probs([[0.995, 0.004, 0.001], [0.996, 0.002, 0.002], [0.0005, 0.0005, 0.999], [0.6, 0.3, 0.1]])
    strong = log_probs([[0.5, 0.25, 0.25], [0.25, 0.5, 0.25], [0.1, 0.1, 0.8], [0.2, 0.2, 0.6]])
    # confident: samples 0, 1 (class 0) and 2 (class 2); n = 3, n_0 = 2, n_2 = 1 → w = (1.5, 1, 3)
    assert balance_weights(torch.tensor([0, 0, 2]), 3).tolist() == [1.5, 1.0, 3.0]
    ce = [math.log(2), math.log(4), -math.log(0.8)]  # −log p_strong[target]
    plain, fraction = self_label_loss(weak, strong, 0.99, balance=False)
    assert float(fraction) == 0.75
    assert float(plain) == pytest.approx(sum(ce) / 3, abs=1e-6)
    balanced, _ = self_label_loss(weak, strong, 0.99, balance=True)
    assert float(balanced) == pytest.approx((1.5 * ce[0] + 1.5 * ce[1] + 3 * ce[2]) / 6, abs=1e-6)
    none, fraction = self_label_loss(weak, strong, 0.999999, balance=True)
    assert float(none) == 0.0 and float(fraction) == 0.0


def test_head_selection_keeps_the_head_with_the_lowest_scan_loss():
    from ccli.methods.scan_heads import head_losses, select_head

    table = np.array([[1, 2], [0, 2], [0, 1], [4, 5], [3, 5], [3, 4]])
    agree = torch.tensor([[0.9, 0.1]] * 3 + [[0.1, 0.9]] * 3)  # neighbours share a cluster, both used
    split = torch.tensor([[0.9, 0.1], [0.1, 0.9]] * 3)  # neighbours disagree
    collapsed = torch.tensor([[0.99, 0.01]] * 6)  # consistent but one cluster: the entropy term penalises it
    losses = head_losses([split, collapsed, agree], table, 5.0)
    assert select_head(losses) == 2 and losses[2] < losses[1] and losses[2] < losses[0]
    assert select_head([0.3, 0.1, 0.1]) == 1


# --- fixtures -------------------------------------------------------------------------------


def _neighbors(path, n=1797, k=5, multi_view=False, features_key="raw"):
    rng = np.random.default_rng(0)
    indices = np.stack([(np.arange(n) + s) % n for s in range(1, k + 1)], axis=1)
    attrs = {"k": k, "exclude_self": True, "multi_view": multi_view}
    with ArtifactWriter(path, "neighbors", f"nb-{k}-{multi_view}", {"k": k}, [features_key], attrs=attrs) as w:
        w.write("indices", indices.astype(np.int64))
        w.write("scores", rng.random((n, k)).astype(np.float32))
        if multi_view:
            w.write("steps/weak/indices", indices.astype(np.int64))
    return path


def _pretrained(cli, tmp_path):
    out = tmp_path / "pre"
    result = cli("pretrain", "--method", "simclr", "--data", "digits", "--preset", "digits", "--epochs", "1", "-o", out,
                 "-q")
    assert result.code == 0, result.err
    return out / "checkpoint.pt"


def _synthetic(path, classes=200, per_class=4, seed=0):
    """Images of `classes` random 8×8 templates with a little noise: neighbours are easy, K is large."""
    rng = np.random.default_rng(seed)
    templates = rng.integers(0, 256, size=(classes, 8, 8, 1))
    labels = np.repeat(np.arange(classes), per_class)
    noise = rng.integers(-12, 13, size=(len(labels), 8, 8, 1))
    images = np.clip(templates[labels] + noise, 0, 255).astype(np.uint8)
    np.savez(path, images=images, labels=labels)
    return f"npz:{path}"


QUICK = ("--set", "pretrain_epochs=1", "--epochs", "1", "--set", "eval_every=1")


# --- bad input ------------------------------------------------------------------------------


def test_bad_inputs_are_refused_before_anything_is_written(cli, tmp_path):
    ck = _pretrained(cli, tmp_path)
    out = tmp_path / "never"
    cache = tmp_path / "cache"
    before = sorted(p.relative_to(cache) for p in cache.rglob("*")) if cache.exists() else []
    base = ("train", "--data", "digits", "--preset", "digits", "--checkpoint", ck, "-o", out)
    few = _neighbors(tmp_path / "few.h5", k=5)
    assert_bad_input(cli(*base, "--method", "scan", "--neighbors", few), "--neighbors", "5 neighbours",
                     "num_neighbors=20")
    plain = _neighbors(tmp_path / "plain.h5", k=20)
    assert_bad_input(cli(*base, "--method", "scan+", "--neighbors", plain), "--neighbors", "multi-view",
                     "ccli neighbors --multi-view")
    for threshold in ("1.0", "0", "-0.5", "1.5"):
        assert_bad_input(cli(*base, "--method", "scan", "--neighbors", plain, "--set", "self_label=true", "--set",
                             f"self_label_threshold={threshold}"), "self_label_threshold", "between 0 and 1")
    for method in ("scan", "scan+"):
        assert_bad_input(cli(*base, "--method", method, "--k", "2000"), "--k 2000", "1,797")
    # no checkpoint and a recipe without a pretraining one (the digits recipe, which `--preset auto`
    # also picks for 8×8 grayscale images, names one: cleared here)
    assert_bad_input(cli("train", "--method", "scan", "--data", "digits", "--preset", "digits", "--set",
                         "pretrain_preset=", "--neighbors", plain, "-o", out), "--checkpoint", "pretrain_preset")
    assert not out.exists()
    after = sorted(p.relative_to(cache) for p in cache.rglob("*")) if cache.exists() else []
    assert after == before  # no cache entry, lock or temp file


def test_scan_plus_takes_a_multi_view_artifact(cli, tmp_path):
    ck = _pretrained(cli, tmp_path)
    nb = _neighbors(tmp_path / "mv.h5", k=20, multi_view=True)
    out = tmp_path / "run"
    result = cli("train", "--method", "scan+", "--data", "digits", "--preset", "digits", "--checkpoint", ck,
                 "--neighbors", nb, "--epochs", "1", "--set", "num_heads=3", "--set", "head_only=true", "--set",
                 "head_input=projector", "-o", out, "-q")
    assert result.code == 0, result.err
    # head_only: the backbone and the projector under the heads are the checkpoint's, BN statistics included
    from ccli.engine.checkpoint import load_checkpoint
    from ccli.methods.pretrain import load_pretrained

    trained = load_checkpoint(out / "checkpoint-cluster.pt")["model"]
    pretrained = load_pretrained(ck)
    for prefix, part in (("backbone.", pretrained.backbone), ("neck.", pretrained.projector)):
        for name, value in part.state_dict().items():
            assert torch.equal(trained[prefix + name].cpu(), value.cpu()), prefix + name
    final = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert final["final"] and len(final["head_losses"]) == 3
    assert final["head"] == int(np.argmin(final["head_losses"]))
    # neighbours i+1..i+20: about 1/10 share the anchor's class (digits are sorted by nothing)
    assert 0.0 < final["neighbor_purity"] < 0.5


def test_frozen_heads_train_on_one_feature_pass_as_they_do_on_per_step_forwards(cli, tmp_path, monkeypatch):
    """head_only with augment none reads the features from one pass; the heads come out as with two forwards a step."""
    from ccli.engine.checkpoint import load_checkpoint
    from ccli.methods import scan_heads

    ck = _pretrained(cli, tmp_path)
    nb = _neighbors(tmp_path / "nb.h5", k=20)
    base = ("train", "--method", "scan", "--data", "digits", "--preset", "digits", "--checkpoint", ck, "--neighbors",
            nb, "--epochs", "2", "--set", "num_heads=2", "--set", "head_only=true", "--set", "augment=none", "-q")
    assert scan_heads.frozen_features(scan_heads.ScanConfig(head_only=True, augment="none"))
    assert not scan_heads.frozen_features(scan_heads.ScanConfig(head_only=True, augment="crop"))
    assert not scan_heads.frozen_features(scan_heads.ScanConfig(head_only=False, augment="none"))
    calls = []
    counting = scan_heads.backbone_features

    def count(*args, **kwargs):
        calls.append(1)
        return counting(*args, **kwargs)

    monkeypatch.setattr(scan_heads, "backbone_features", count)
    assert cli(*base, "-o", tmp_path / "cached").code == 0
    assert len(calls) == 1  # one pass serves every step and the head selection
    monkeypatch.setattr(scan_heads, "frozen_features", lambda config: False)
    assert cli(*base, "-o", tmp_path / "forward").code == 0
    assert len(calls) == 2  # the per-step path: only the head selection's pass
    a = load_checkpoint(tmp_path / "cached" / "checkpoint-cluster.pt")["model"]
    b = load_checkpoint(tmp_path / "forward" / "checkpoint-cluster.pt")["model"]
    for name in a:
        if name.startswith("heads."):
            torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5)
    final = [json.loads((tmp_path / run / "metrics.jsonl").read_text().splitlines()[-1]) for run in ("cached", "forward")]
    assert final[0]["head"] == final[1]["head"]
    np.testing.assert_allclose(final[0]["head_losses"], final[1]["head_losses"], rtol=1e-4)


# --- many clusters, the chain ------------------------------------------------------------------


def test_k_200_end_to_end_on_synthetic_images(cli, tmp_path):
    import h5py

    data = _synthetic(tmp_path / "syn.npz")
    out = tmp_path / "run"
    result = cli("train", "--method", "scan+", "--data", data, "--preset", "digits", *QUICK, "--set",
                 "num_neighbors=3", "--set", "num_heads=2", "--set", "batch_size=200", "--set", "self_label=true",
                 "--set", "self_label_epochs=1", "--set", "self_label_batch_size=200", "-o", out, "-q")
    assert result.code == 0, result.err
    with h5py.File(out / "predictions.h5") as f:
        labels, probs = f["labels"][:], f["probs"][:]
    assert labels.shape == (800,) and probs.shape == (800, 200)
    np.testing.assert_array_equal(labels, probs.argmax(1))
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("stage") for r in lines] == ["cluster", "selflabel", None]
    assert lines[-1]["clusters_used"] > 1 and 0.0 <= lines[-1]["acc"] <= 1.0
    assert "purity_weak" in lines[-1] and "confident" in lines[1]
    # The digits preset mines on the pretrained projector's output (embed_layer; scanplus.md §5.3.1).
    from ccli.methods.pretrain import load_pretrained

    (features,) = (tmp_path / "cache" / "features").glob("*.h5")
    with h5py.File(features) as f:
        assert f.attrs["layer"] == "projector"
        assert f["features"].shape == (800, load_pretrained(lines[-1]["checkpoint"]).projector.out_dim)


@pytest.mark.parametrize("method", ["scan", pytest.param("scan+", marks=pytest.mark.slow)])
def test_the_chain_from_images_reuses_the_cache(cli, tmp_path, method):
    quick = QUICK + (("--set", "mine_strong_draws=1") if method == "scan+" else ())
    first = cli("train", "--method", method, "--data", "digits", "--preset", "digits", *quick, "-o", tmp_path / "a",
                "-q")
    assert first.code == 0, first.err
    one = json.loads((tmp_path / "a" / "metrics.jsonl").read_text().splitlines()[-1])
    assert not one["pretrain_cached"] and not one["embed_cached"] and not one["neighbors_cached"]
    # Another clustering setting on the same chain: pretraining, embedding and mining are cache hits.
    second = cli("train", "--method", method, "--data", "digits", "--preset", "digits", *quick, "--set",
                 "entropy_weight=4", "-o", tmp_path / "b", "-q")
    assert second.code == 0, second.err
    two = json.loads((tmp_path / "b" / "metrics.jsonl").read_text().splitlines()[-1])
    assert two["pretrain_cached"] and two["embed_cached"] and two["neighbors_cached"]
    assert two["checkpoint"] == one["checkpoint"] and two["neighbors"] == one["neighbors"]
    config = (tmp_path / "b" / "config.yaml").read_text()
    assert "entropy_weight: 4" in config


# --- presets ---------------------------------------------------------------------------------


def test_every_preset_resolves_names_a_source_and_pretrains_its_own_backbone():
    from pathlib import Path

    from ccli.config import resolve_config
    from ccli.methods import registry
    from ccli.methods.scan_heads import pretrain_config

    root = Path(__file__).resolve().parents[1] / "presets"
    for method in ("scan", "scan+"):
        module = registry.load(registry.get(method))
        names = sorted(p.stem for p in (root / method).glob("*.yaml"))
        assert {"digits", "fashion-mnist", "stl10", "imagenet200"} <= set(names)
        for name in names:
            text = (root / method / f"{name}.yaml").read_text()
            for line in text.splitlines():
                if line and not line.startswith(("#", " ", "paper_results")):
                    assert "#" in line, (method, name, line)  # every value names its source
            config = resolve_config(module.Config, method, name)
            assert pretrain_config(config).backbone == config.backbone, (method, name)
