"""`selfpaced` (thesis 001 Ch. 3): its losses against hand-computed values, the pair selection against
a brute-force count, the autoencoders' shapes, a tiny end-to-end run and every bad input (exit 2,
nothing written)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from ccli.errors import BadInput
from ccli.losses import selfpaced as L
from tests.conftest import assert_bad_input

TINY = ["train", "-m", "selfpaced", "--data", "digits", "--preset", "digits", "--epochs", "1",
        "--set", "pretrain_epochs=1", "--set", "stage1_epochs=2", "--set", "t1=1", "--set", "kmeans_n_init=2",
        "--set", "eval_every=0", "-q"]


# ---- losses ------------------------------------------------------------------------------------
def test_augmentation_loss_is_one_minus_the_mean_cosine_and_the_literal_sign_is_the_cosine():
    h = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    h_aug = torch.tensor([[2.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    mean_cos = (1.0 + 1.0 / math.sqrt(2.0)) / 2.0
    assert float(L.augmentation_loss(h, h_aug)) == pytest.approx(1.0 - mean_cos, abs=1e-12)
    assert float(L.augmentation_loss(h, h_aug, literal=True)) == pytest.approx(mean_cos, abs=1e-12)


def test_student_t_soft_assignment_matches_eq_3_3_by_hand():
    h = torch.zeros(1, 1, dtype=torch.float64)
    centres = torch.tensor([[1.0], [2.0]], dtype=torch.float64)
    # α = 1: (1 + d²)^−1 → 1/2 and 1/5
    assert L.student_t(h, centres, 1.0)[0].tolist() == pytest.approx([0.5 / 0.7, 0.2 / 0.7], abs=1e-12)
    # α = 2: (1 + d²/2)^−3/2 → 1.5^−1.5 and 3^−1.5
    a, b = 1.5 ** -1.5, 3.0 ** -1.5
    assert L.student_t(h, centres, 2.0)[0].tolist() == pytest.approx([a / (a + b), b / (a + b)], abs=1e-12)


def test_centre_loss_and_the_eq_3_4_centres_by_hand():
    h = torch.tensor([[0.0], [3.0]], dtype=torch.float64, requires_grad=True)
    centres = torch.tensor([[1.0], [2.0]], dtype=torch.float64)
    p = torch.tensor([[0.5, 0.5], [0.25, 0.75]], dtype=torch.float64, requires_grad=True)
    loss = L.centre_loss(h, centres, p)
    assert float(loss.detach()) == pytest.approx((0.5 * 1 + 0.5 * 4 + 0.25 * 4 + 0.75 * 1) / 2)
    loss.backward()
    assert p.grad is None  # p is a constant weight (S9)
    h_aug = torch.tensor([[0.0, 2.0], [4.0, 0.0]], dtype=torch.float64)
    mu = L.weighted_centres(h_aug, p.detach())
    assert mu.tolist() == [pytest.approx([1 / 0.75, 1 / 0.75]), pytest.approx([3 / 1.25, 1 / 1.25])]


def test_negatives_only_contrast_by_hand():
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)
    pos = torch.zeros(5, 5, dtype=torch.bool)
    neg = torch.zeros(5, 5, dtype=torch.bool)
    pos[0, [1, 2]] = True
    neg[0, [3, 4]] = True
    # anchor 0, τ = 1: log(e^0 + e^−1) − (1 + 0.6)/2; the other anchors have no pairs and are skipped
    assert float(L.negatives_only_contrast(z, pos, neg, 1.0)) == pytest.approx(math.log(1 + math.exp(-1)) - 0.8)
    # τ = 0.5 scales every similarity by 2
    assert float(L.negatives_only_contrast(z, pos, neg, 0.5)) == pytest.approx(math.log(1 + math.exp(-2)) - 1.6)
    pos[3, 4] = True  # an anchor with positives but no negative is skipped too
    assert float(L.negatives_only_contrast(z, pos, neg, 1.0)) == pytest.approx(math.log(1 + math.exp(-1)) - 0.8)
    assert float(L.negatives_only_contrast(z, pos & False, neg, 1.0)) == 0.0


def test_pairs_at_0_8_and_0_2_match_a_brute_force_count():
    gen = torch.Generator().manual_seed(3)
    h = torch.nn.functional.normalize(torch.randn(24, 4, generator=gen, dtype=torch.float64) + 0.7, dim=1)
    sim = h @ h.t()
    pos, neg = L.threshold_pairs(sim, 0.8, 0.2)
    n_pos = n_neg = 0
    for i in range(24):
        for j in range(24):
            if i == j:
                continue
            n_pos += bool(sim[i, j] >= 0.8)
            n_neg += bool(sim[i, j] <= 0.2)
            assert bool(pos[i, j]) == bool(sim[i, j] >= 0.8) and bool(neg[i, j]) == bool(sim[i, j] <= 0.2)
    assert int(pos.sum()) == n_pos and int(neg.sum()) == n_neg
    assert 0 < n_pos and 0 < n_neg and n_pos + n_neg < 24 * 23  # some pairs are ignored
    assert not pos.diagonal().any() and not neg.diagonal().any()


def test_with_views_repeats_the_pairs_over_views_and_adds_each_images_own_view():
    pos = torch.tensor([[False, True, False], [True, False, False], [False, False, False]])
    neg = torch.tensor([[False, False, True], [False, False, True], [True, True, False]])
    pos2, neg2 = L.with_views(pos, neg, 2)
    assert pos2.shape == neg2.shape == (6, 6)
    # row 0 (image 0, clean): image 1 in both views, its own augmented view (row 3); never itself
    assert pos2[0].nonzero().flatten().tolist() == [1, 3, 4]
    assert pos2[5].nonzero().flatten().tolist() == [2]  # image 2 has no pair: only its own other view
    assert neg2[0].nonzero().flatten().tolist() == [2, 5]
    assert neg2[5].nonzero().flatten().tolist() == [0, 1, 3, 4]
    assert not (pos2 & neg2).any() and not pos2.diagonal().any() and not neg2.diagonal().any()
    same, _ = L.with_views(pos, neg, 1)
    assert torch.equal(same, pos)


def test_stage2_views_other_than_1_or_2_are_refused(cli, tmp_path):
    for bad in ("0", "3"):
        result = cli(*TINY, "--set", f"stage2_views={bad}", "-o", tmp_path / "out")
        assert_bad_input(result, f"stage2_views={bad}")
    _nothing_written(tmp_path)


def test_threshold_schedule_fixed_is_constant_and_linear_moves_from_start_to_final():
    assert L.threshold_at(0.0, 0.8, 0.95, "fixed") == 0.8
    assert L.threshold_at(0.0, 0.8, 0.95, "linear") == pytest.approx(0.95)
    assert L.threshold_at(0.5, 0.8, 0.95, "linear") == pytest.approx(0.875)
    assert L.threshold_at(1.0, 0.2, 0.05, "linear") == pytest.approx(0.2)


# ---- autoencoders ------------------------------------------------------------------------------
@pytest.mark.parametrize("side,channels,latent", [(28, 1, 10), (32, 3, 512), (96, 3, 512)])
def test_the_conv_autoencoder_reconstructs_exactly_the_input_size(side, channels, latent):
    from ccli.models.autoencoder import ConvAutoencoder

    ae = ConvAutoencoder(channels, side)
    x = torch.rand(2, channels, side, side)
    h, rec, target = ae(x)
    assert h.shape == (2, latent) and rec.shape == x.shape and target is x


def test_the_dec_cae_has_the_spec_layers():
    from ccli.models.autoencoder import ConvAutoencoder

    ae = ConvAutoencoder(1, 28)
    convs = [m for m in ae.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(m.out_channels, m.kernel_size[0], m.stride[0], m.padding[0]) for m in convs] == \
        [(32, 5, 2, 2), (64, 5, 2, 2), (128, 3, 2, 0)]
    assert ae.encoder.code[0].in_features == 1152


def test_feature_autoencoder_reconstructs_the_frozen_2048_features_and_keeps_the_trunk_frozen():
    from ccli.models.autoencoder import FeatureAutoencoder

    ae = FeatureAutoencoder(20).train()
    h, rec, f = ae(torch.rand(2, 3, 32, 32))
    assert h.shape == (2, 20) and rec.shape == f.shape == (2, 2048)
    dims = [m.out_features for m in ae.encoder.mlp if isinstance(m, torch.nn.Linear)]
    assert dims == [500, 500, 1000, 20]
    assert not ae.encoder.trunk.net.training and not any(p.requires_grad for p in ae.encoder.trunk.parameters())


@pytest.mark.slow  # > 10 s: trains (or builds ResNet-50s)
def test_backbone_weights_load_a_resnet50_file_and_refuse_another_network(tmp_path):
    from torchvision.models import resnet18, resnet50

    from ccli.models.autoencoder import FrozenResNet50, load_backbone_weights

    good = resnet50(weights=None)
    torch.save(good.state_dict(), tmp_path / "r50.pth")
    trunk = FrozenResNet50()
    load_backbone_weights(trunk, tmp_path / "r50.pth")
    assert torch.equal(trunk.net.conv1.weight, good.conv1.weight)
    torch.save(resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(BadInput, match="does not hold torchvision ResNet-50 weights"):
        load_backbone_weights(FrozenResNet50(), tmp_path / "r18.pth")


# ---- end to end --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    import contextlib
    import io
    import os

    from ccli.cli.main import run

    root = tmp_path_factory.mktemp("selfpaced")
    os.environ["CCLI_CACHE"] = str(root / "cache")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        run(TINY + ["-o", str(root / "run")])
    return root / "run"


@pytest.mark.slow  # > 10 s: trains (or builds ResNet-50s)
def test_a_tiny_run_trains_three_stages_and_predicts_every_image(tiny_run):
    import h5py

    from ccli.engine.checkpoint import load_checkpoint

    for stage in ("pretrain", "stage1", "stage2"):
        assert load_checkpoint(tiny_run / f"checkpoint-{stage}.pt")["complete"]
    lines = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    stage1 = [r for r in lines if r.get("stage") == "stage1"]
    stage2 = [r for r in lines if r.get("stage") == "stage2"]
    assert {"augmentation", "centre"} <= set(stage1[0]) and {"positive_pairs", "negative_pairs"} <= set(stage2[0])
    # per anchor, positives + negatives + ignored = the other b − 1 images of the batch
    assert stage2[0]["positive_pairs"] + stage2[0]["negative_pairs"] + stage2[0]["ignored_pairs"] == \
        pytest.approx(500 - 1)
    state = load_checkpoint(tiny_run / "checkpoint-stage1.pt")
    assert bool(state["model"]["centres_ready"]) and torch.isfinite(state["model"]["centres"]).all()
    with h5py.File(tiny_run / "predictions.h5") as f:
        labels = f["labels"][:]
        probs = f["probs"][:]
    assert labels.shape == (1797,) and probs.shape == (1797, 10)
    assert np.array_equal(labels, probs.argmax(1))
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)


@pytest.mark.slow  # > 10 s: trains (or builds ResNet-50s)
def test_an_ae_checkpoint_skips_pretraining_and_enters_the_run_key(cli, tmp_path, tiny_run):
    ckpt = tiny_run / "checkpoint-pretrain.pt"
    result = cli(*TINY, "--set", f"ae_checkpoint={ckpt}", "--set", "stage1_epochs=0", "-o", tmp_path / "warm",
                 "--json")
    assert result.code == 0, result.err
    assert not (tmp_path / "warm" / "checkpoint-pretrain.pt").exists()
    from ccli.engine.checkpoint import load_checkpoint

    started = load_checkpoint(tmp_path / "warm" / "checkpoint-stage2.pt")["model"]
    pretrained = load_checkpoint(ckpt)["model"]
    # the decoder is not trained after pretraining: it is the checkpoint's
    assert torch.equal(started["ae.decoder.fc.0.weight"], pretrained["ae.decoder.fc.0.weight"])
    from ccli.engine.checkpoint import file_identity
    from ccli.store import open_artifact

    with open_artifact(tmp_path / "warm" / "predictions.h5", "predictions") as art:
        assert f"ae_checkpoint:{file_identity(ckpt)}" in list(art.inputs)


# ---- bad input: exit 2, one sentence, nothing written ------------------------------------------
def _nothing_written(tmp_path):
    assert not (tmp_path / "out").exists()
    cache = tmp_path / "cache"
    assert not cache.exists() or not any(p.is_file() for p in cache.rglob("*") if "datasets" not in p.parts)


def test_thresholds_with_positive_at_or_below_negative_are_refused(cli, tmp_path):
    for zeta, gamma in (("0.2", "0.2"), ("0.3", "0.6")):
        result = cli(*TINY, "--set", f"zeta={zeta}", "--set", f"gamma={gamma}", "-o", tmp_path / "out")
        assert_bad_input(result, f"zeta={zeta}", f"gamma={gamma}")
    result = cli(*TINY, "--set", "threshold_schedule=linear", "--set", "zeta_start=0.04", "-o", tmp_path / "out")
    assert_bad_input(result, "zeta_start=0.04", "gamma_start=0.05")
    _nothing_written(tmp_path)


@pytest.mark.slow  # > 10 s: trains (or builds ResNet-50s)
def test_an_ae_checkpoint_of_another_image_size_is_refused_both_ways(cli, tmp_path, tiny_run):
    ckpt28 = tiny_run / "checkpoint-pretrain.pt"
    result = cli(*TINY, "--set", "backbone=cae32", "--set", "image_size=32", "--set", "latent_dim=10",
                 "--set", f"ae_checkpoint={ckpt28}", "-o", tmp_path / "out")
    assert_bad_input(result, "ae_checkpoint=", "28 px", "32 px")
    _nothing_written(tmp_path)
    small = cli(*TINY, "--set", "backbone=cae32", "--set", "image_size=32", "--set", "latent_dim=10",
                "--set", "stage1_epochs=0", "-o", tmp_path / "r32")
    assert small.code == 0, small.err
    result = cli(*TINY, "--set", f"ae_checkpoint={tmp_path / 'r32' / 'checkpoint-pretrain.pt'}", "-o", tmp_path / "out")
    assert_bad_input(result, "ae_checkpoint=", "32 px", "28 px")
    assert not (tmp_path / "out").exists()


def test_a_backbone_weights_file_of_another_network_is_refused(cli, tmp_path):
    from torchvision.models import resnet18

    from tests.fixtures_data import write_npz

    write_npz(tmp_path / "rgb.npz", n=40, shape=(32, 32), channels=3)
    torch.save(resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    result = cli("train", "-m", "selfpaced", "--data", f"npz:{tmp_path / 'rgb.npz'}", "--k", "3",
                 "--set", "backbone=resnet50-feature-ae", "--set", "image_size=32", "--batch-size", "20",
                 "--set", "pretrain_batch_size=20", "--set", f"backbone_weights={tmp_path / 'r18.pth'}",
                 "-o", tmp_path / "out")
    assert_bad_input(result, "backbone_weights=", "ResNet-50")
    _nothing_written(tmp_path)


@pytest.mark.parametrize("preset", ["digits", "fashion-mnist", "mnist", "cifar10", "cifar100-20", "stl10"])
def test_every_preset_resolves_to_the_config(preset):
    from ccli.config import preset_metadata
    from ccli.methods import registry

    module = registry.load(registry.get("selfpaced"))
    config = registry.resolve_method_config(module, "selfpaced", preset)
    assert config.zeta == 0.8 and config.gamma == 0.2
    # digits: BENCHMARKS.md issue 12 session 2 (sp): two stage-2 views and 256-image batches; the rest keep S14's 500
    assert (config.engine.batch_size, config.stage2_views) == ((256, 2) if preset == "digits" else (500, 1))
    if preset in ("mnist", "cifar10", "cifar100-20", "stl10"):
        assert (config.lam, config.t1, config.t2, config.tau, config.stage1_epochs, config.engine.epochs) == \
            (0.7, 2, 5, 0.5, 100, 50)  # thesis §3.3.3
        assert config.latent_dim == (10 if preset == "mnist" else 20)
        assert "paper_results" in preset_metadata("selfpaced", preset)
    if preset == "fashion-mnist":  # BENCHMARKS.md issue 12: 10 stage-1 epochs shrank the codes into 2 centres
        assert (config.stage1_epochs, config.entropy_weight, config.threshold_schedule) == (1, 1.0, "linear")
        assert (config.lam, config.t1, config.stage1_lr, config.lr_ae, config.engine.lr) == (0.7, 2, 1e-5, 1e-5, 1e-3)
