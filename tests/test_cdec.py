"""cdec (issue 13): the DEC terms against hand-computed values, the decoder, a tiny run, resume, bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from tests.conftest import assert_bad_input

TINY = ("--data", "digits", "--preset", "digits", "--set", "batch_size=256", "--set", "eval_every=0")


# --- losses ---------------------------------------------------------------------------------
def test_student_t_assignment_matches_hand_values_and_rows_sum_to_one():
    from ccli.losses.dec import student_t_assignment, student_t_log_assignment

    e = torch.tensor([[0.0, 0.0]])
    mu = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    # ν = 1: kernels (1 + 1)^-1 = 0.5 and (1 + 4)^-1 = 0.2
    assert torch.allclose(student_t_assignment(e, mu), torch.tensor([[0.5 / 0.7, 0.2 / 0.7]]))
    # ν = 3: (1 + d²/3)^-2
    k1, k2 = (1 + 1 / 3) ** -2, (1 + 4 / 3) ** -2
    assert torch.allclose(student_t_assignment(e, mu, nu=3.0), torch.tensor([[k1 / (k1 + k2), k2 / (k1 + k2)]]))
    g = torch.Generator().manual_seed(0)
    q = student_t_assignment(torch.randn(50, 8, generator=g) * 30, torch.randn(7, 8, generator=g))
    assert torch.allclose(q.sum(1), torch.ones(50)) and (q > 0).all()
    far = student_t_log_assignment(torch.full((1, 2), 1e4), torch.zeros(3, 2))
    assert torch.isfinite(far).all()


def test_target_distribution_matches_hand_values():
    from ccli.losses.dec import target_distribution

    q = torch.tensor([[0.8, 0.2], [0.4, 0.6]])
    # f = (1.2, 0.8); row 1: 0.64/1.2, 0.04/0.8 → normalised; row 2: 0.16/1.2, 0.36/0.8
    r1 = np.array([0.64 / 1.2, 0.04 / 0.8])
    r2 = np.array([0.16 / 1.2, 0.36 / 0.8])
    expected = np.stack([r1 / r1.sum(), r2 / r2.sum()])
    p = target_distribution(q)
    assert np.allclose(p.numpy(), expected, atol=1e-6)
    assert np.allclose(expected, [[0.914286, 0.085714], [0.228571, 0.771429]], atol=1e-6)
    assert not p.requires_grad


def test_kl_term_matches_hand_values_and_torch():
    from ccli.losses.dec import kl_target_loss

    p = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    q = torch.tensor([[0.5, 0.5], [0.25, 0.75]])
    hand = (math.log(2) + 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)) / 2
    assert abs(hand - 0.418494) < 1e-6
    assert torch.allclose(kl_target_loss(p, q.log()), torch.tensor(hand))
    reference = torch.nn.functional.kl_div(q.log(), p, reduction="batchmean")
    assert torch.allclose(kl_target_loss(p, q.log()), reference)
    assert float(kl_target_loss(q, q.log())) == pytest.approx(0.0, abs=1e-7)


def test_kl_gradient_pulls_the_embedding_towards_the_targets_centre():
    from ccli.losses.dec import kl_target_loss, student_t_log_assignment

    e = torch.tensor([[0.5, 0.0]], requires_grad=True)
    mu = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    kl_target_loss(torch.tensor([[0.0, 1.0]]), student_t_log_assignment(e, mu)).backward()
    assert e.grad[0, 0] < 0  # a step against the gradient moves e towards μ_2 = (1, 0)


def test_reconstruction_loss_is_the_per_pixel_mean_over_views():
    from ccli.losses.dec import reconstruction_loss

    x = torch.zeros(2, 1, 2, 2)
    a, b = torch.ones(2, 1, 2, 2), torch.full((2, 1, 2, 2), 2.0)
    assert float(reconstruction_loss([a, b], [x, x])) == pytest.approx((1 + 4) / 2)
    with pytest.raises(ValueError, match="shape"):
        reconstruction_loss(torch.zeros(2, 1, 4, 4), x)


@pytest.mark.parametrize("size,channels", [(8, 1), (28, 1), (30, 3), (32, 3), (96, 3)])
def test_reconstruction_shape_equals_the_inputs(size, channels):
    from ccli.models.decoder import Decoder

    out = Decoder(16, channels, size, width=32)(torch.randn(3, 16))
    assert out.shape == (3, channels, size, size)


def test_decoder_layout_is_the_specs_for_32_and_96_px():
    from ccli.models.decoder import Decoder, decoder_layout

    assert decoder_layout(32) == (3, 4) and decoder_layout(96) == (4, 6)
    assert decoder_layout(8) == (1, 4) and decoder_layout(28) == (2, 7)
    widths = [m.out_channels for m in Decoder(128, 3, 96).modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert widths == [128, 64, 32, 3]


# --- runs -----------------------------------------------------------------------------------
def test_a_tiny_run_trains_both_stages_and_keeps_centres_and_target(cli, tmp_path):
    from ccli.engine.checkpoint import load_checkpoint

    out = tmp_path / "run"
    result = cli("train", "--method", "cdec", *TINY, "--epochs", "2", "--set", "embed_epochs=1", "-o", out, "-q")
    assert result.code == 0, result.err
    assert sorted(p.name for p in out.glob("checkpoint-*.pt")) == ["checkpoint-cluster.pt", "checkpoint-embed.pt"]
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    embed, cluster = lines[0], lines[1]
    assert embed["stage"] == "embed" and "kl" not in embed and embed["rec"] > 0
    assert cluster["stage"] == "cluster" and cluster["kl"] > 0 and cluster["rec"] > 0
    state = load_checkpoint(out / "checkpoint-cluster.pt")["model"]
    target = state["target"]
    assert target.shape == (1797, 10) and torch.allclose(target.sum(1), torch.ones(1797), atol=1e-5)
    assert int(state["centers_ready"]) == 1 and state["centers"].abs().sum() > 0
    scores = json.loads((out / "scores.json").read_text())
    assert 0 <= scores["acc"] <= 1


@pytest.mark.slow
def test_resume_continues_with_the_checkpointed_centres_and_target(cli, tmp_path, monkeypatch):
    import ccli.fit.kmeans
    from ccli.engine.checkpoint import load_checkpoint
    from ccli.methods import cdec

    args = ("train", "--method", "cdec", *TINY, "--epochs", "4", "--set", "embed_epochs=1", "--set",
            "target_every=2", "-q")
    straight = tmp_path / "straight"
    assert cli(*args, "-o", straight).code == 0
    calls = {"kmeans": 0, "kl_steps": 0}
    real_kmeans, real_loss = ccli.fit.kmeans.kmeans, cdec.cdec_loss

    def counting_kmeans(*a, **k):
        calls["kmeans"] += 1
        return real_kmeans(*a, **k)

    def interrupted_loss(out, views, rows, config, ctx, with_kl):
        if with_kl:
            calls["kl_steps"] += 1
            if ctx.epoch == 2:  # stage cluster's epoch 1 is checkpointed; P is not refreshed at epoch 2
                raise KeyboardInterrupt
        return real_loss(out, views, rows, config, ctx, with_kl)

    monkeypatch.setattr(ccli.fit.kmeans, "kmeans", counting_kmeans)
    monkeypatch.setattr(cdec, "cdec_loss", interrupted_loss)
    resumed = tmp_path / "resumed"
    assert cli(*args, "-o", resumed).code != 0
    assert load_checkpoint(resumed / "checkpoint-cluster.pt")["epoch"] == 1 and calls["kmeans"] == 1
    monkeypatch.setattr(cdec, "cdec_loss", real_loss)
    result = cli(*args, "-o", resumed)
    assert result.code == 0, result.err
    assert calls["kmeans"] == 1  # the centres came back from the checkpoint
    a = load_checkpoint(straight / "checkpoint-cluster.pt")["model"]
    b = load_checkpoint(resumed / "checkpoint-cluster.pt")["model"]
    assert int(b["target_epoch"]) == 3
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_ablation_without_kl_never_fits_centres(cli, tmp_path, monkeypatch):
    import ccli.fit.kmeans
    from ccli.engine.checkpoint import load_checkpoint

    def no_kmeans(*a, **k):
        raise AssertionError("k-means ran with w_kl=0")

    monkeypatch.setattr(ccli.fit.kmeans, "kmeans", no_kmeans)
    out = tmp_path / "run"
    result = cli("train", "--method", "cdec", *TINY, "--epochs", "2", "--set", "embed_epochs=1", "--set", "w_kl=0",
                 "--set", "w_rec=0", "-o", out, "-q")
    assert result.code == 0, result.err
    last = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()][1]
    assert "kl" not in last and "rec" not in last
    assert int(load_checkpoint(out / "checkpoint-cluster.pt")["model"]["centers_ready"]) == 0


# --- bad input ------------------------------------------------------------------------------
@pytest.mark.parametrize("setting,needles", [
    ("w_rec=-0.1", ("w_rec=-0.1", "0 or more")),
    ("w_kl=-1", ("w_kl=-1", "0 or more")),
    ("target_every=0", ("target_every=0", "at least 1")),
    ("embed_epochs=5", ("embed_epochs=5", "epochs=5")),
])
def test_bad_settings_exit_2_and_write_nothing(cli, tmp_path, setting, needles):
    out = tmp_path / "never"
    result = cli("train", "--method", "cdec", *TINY, "--epochs", "5", "--set", setting, "-o", out)
    assert_bad_input(result, *needles)
    assert not out.exists() and not (tmp_path / "cache" / "runs").exists()


@pytest.mark.parametrize("shape,needles", [((7, 128), ("7 centres", "K=10")), ((10, 64), ("dimension 64", "embed_dim=128"))])
def test_centres_of_the_wrong_k_or_dimension_are_refused(cli, tmp_path, shape, needles):
    path = tmp_path / "centres.npy"
    np.save(path, np.zeros(shape, dtype=np.float32))
    out = tmp_path / "never"
    result = cli("train", "--method", "cdec", *TINY, "--epochs", "2", "--set", "embed_epochs=1", "--set",
                 f"centers={path}", "-o", out)
    assert_bad_input(result, f"centers={path}", *needles)
    assert not out.exists() and not (tmp_path / "cache" / "runs").exists()


def test_given_centres_replace_kmeans(cli, tmp_path, monkeypatch):
    import ccli.fit.kmeans
    from ccli.engine.checkpoint import load_checkpoint

    monkeypatch.setattr(ccli.fit.kmeans, "kmeans", lambda *a, **k: (_ for _ in ()).throw(AssertionError("k-means")))
    centres = np.random.default_rng(0).normal(size=(10, 128)).astype(np.float32)
    np.save(tmp_path / "c.npy", centres)
    out = tmp_path / "run"
    result = cli("train", "--method", "cdec", *TINY, "--epochs", "2", "--set", "embed_epochs=1", "--set",
                 f"centers={tmp_path / 'c.npy'}", "--set", "lr=1e-12", "-o", out, "-q")
    assert result.code == 0, result.err
    kept = load_checkpoint(out / "checkpoint-cluster.pt")["model"]["centers"].numpy()
    assert np.allclose(kept, centres, atol=1e-5)


def test_the_listing_says_the_method_is_a_proposed_reading():
    from ccli.methods import registry

    summary = registry.get("cdec").summary
    assert "PROPOSED" in summary and "abstract" in summary
