"""`graph` (thesis 001 Ch. 4): its losses against hand-computed values, chunked self-expression against
the full form on a block-diagonal toy case, the --graph input in the run key, a tiny end-to-end run
and the bad inputs (exit 2, nothing written)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ccli.losses import graph_contrast as G
from ccli.losses.self_expressive import self_expression_loss
from tests.conftest import assert_bad_input

TINY = ["train", "-m", "graph", "--data", "digits", "--preset", "digits", "--epochs", "1",
        "--set", "pretrain_epochs=1", "--set", "se_warmup_epochs=1", "--set", "eval_every=0", "-q"]


# ---- losses ------------------------------------------------------------------------------------
def test_affinity_is_c_plus_c_transposed_signed_or_absolute_with_a_zero_diagonal():
    c = torch.tensor([[5.0, 1.0, -2.0], [3.0, 0.0, 0.5], [1.0, -1.0, 7.0]], dtype=torch.float64)
    assert G.affinity(c).tolist() == [[0.0, 4.0, -1.0], [4.0, 0.0, -0.5], [-1.0, -0.5, 0.0]]
    assert G.affinity(c, "abs").tolist() == [[0.0, 4.0, 3.0], [4.0, 0.0, 1.5], [3.0, 1.5, 0.0]]


def test_topk_positives_strongest_neighbour_and_the_adaptive_rule():
    a = torch.tensor([[0.0, 3.0, 1.0, -1.0],
                      [3.0, 0.0, 2.0, 0.5],
                      [1.0, 2.0, 0.0, 4.0],
                      [-1.0, 0.5, 4.0, 0.0]])
    pos = G.topk_positives(a, 2)
    assert pos.tolist() == [[False, True, True, False], [True, False, True, False],
                            [False, True, False, True], [False, True, True, False]]
    assert G.strongest_neighbour(a).tolist() == [1, 0, 3, 2]
    # adaptive: row 0 has 2 positive entries of 3 (more than its 1 negative) → capped to the top 1
    adaptive = G.adaptive_positives(a, 1)
    assert adaptive[0].tolist() == [False, True, False, False]
    a2 = a.clone()
    a2[0] = torch.tensor([0.0, 3.0, -1.0, -1.0])
    assert G.adaptive_positives(a2, 1)[0].tolist() == [False, True, False, False]  # 1 positive ≤ 2 negatives


def test_graph_instance_loss_by_hand():
    h = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]], dtype=torch.float64)
    pos = torch.tensor([[False, True, False], [True, False, False], [False, True, False]])
    # τ1 = 0.5; s01 = 0.6, s02 = 0, s12 = 0.8. Anchor 0: log e^{0/τ} − 0.6/τ. Anchor 1: log e^{0.8/τ} − 0.6/τ.
    # Anchor 2: positive 1, negative 0: log e^{0} − 0.8/τ.
    expected = ((0.0 - 1.2) + (1.6 - 1.2) + (0.0 - 1.6)) / 3
    assert float(G.graph_instance_loss(h, pos, 0.5)) == pytest.approx(expected)


def test_graph_cluster_loss_contrasts_columns_by_hand():
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], dtype=torch.float64)
    y2 = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]], dtype=torch.float64)
    # columns: cl1 = (1, 0, .5), cl2 = (0, 1, .5); cl'1 = (1, .5, 0), cl'2 = (0, .5, 1); all norms √1.25
    s11, s12, s21, s22 = 1 / 1.25, 0.5 / 1.25, 0.5 / 1.25, 1 / 1.25
    expected = -0.5 * (math.log(math.exp(s11) / (math.exp(s11) + math.exp(s12)))
                       + math.log(math.exp(s22) / (math.exp(s21) + math.exp(s22))))
    assert float(G.graph_cluster_loss(y, y2, 1.0)) == pytest.approx(expected)


def test_self_expression_loss_by_hand():
    z = torch.tensor([[1.0, 0.0], [2.0, 0.0]], dtype=torch.float64)
    c = torch.tensor([[0.0, 0.5], [1.0, 0.0]], dtype=torch.float64)
    # CZ = [[1, 0], [1, 0]]: residual [[0, 0], [1, 0]]; ‖C‖²_F = 1.25; λ = 2 → (1.25 + 2·1)/2
    assert float(self_expression_loss(c, z, 2.0)) == pytest.approx(3.25 / 2)


def test_two_view_positives_are_the_other_view_and_the_graph_positives_in_both_views():
    pos = torch.tensor([[False, True, False], [False, False, True], [True, False, False]])
    two = G.two_view_positives(pos)
    t, f = True, False
    assert two.tolist() == [[f, t, f, t, t, f], [f, f, t, f, t, t], [t, f, f, t, f, t],
                            [t, t, f, f, t, f], [f, t, t, f, f, t], [t, f, t, t, f, f]]


def test_two_view_instance_loss_by_hand():
    # Two samples, both views e1 and e2; no positives from A, so each anchor's only positive is its
    # other view (s = 1) and its negatives are the other sample in both views (s = 0, twice).
    h1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    h2 = h1.clone()
    pos = torch.zeros(2, 2, dtype=torch.bool)
    # τ1 = 0.5: every anchor gives log(e^0 + e^0) − 1/0.5 = log 2 − 2
    assert float(G.two_view_instance_loss(h1, h2, pos, 0.5)) == pytest.approx(math.log(2.0) - 2.0)


# ---- chunked = full on a block-diagonal case ---------------------------------------------------
def _two_subspaces(seed=0):
    rng = np.random.default_rng(seed)
    # 7 points in span(e1, e2) and 6 in span(e3, e4): independent (orthogonal) subspaces of R^5
    a = np.zeros((7, 5))
    a[:, :2] = rng.standard_normal((7, 2))
    b = np.zeros((6, 5))
    b[:, 2:4] = rng.standard_normal((6, 2))
    return torch.from_numpy(np.concatenate([a, b]))


def test_chunked_self_expression_equals_the_full_form_on_independent_subspaces():
    from ccli.methods.graph import closed_coefficients

    z = _two_subspaces()
    full = closed_coefficients(z, 1.0)
    first, second = closed_coefficients(z[:7], 1.0), closed_coefficients(z[7:], 1.0)
    # the full minimiser is block-diagonal and each block is the chunk's own minimiser
    torch.testing.assert_close(full[:7, :7], first)
    torch.testing.assert_close(full[7:, 7:], second)
    assert float(full[:7, 7:].abs().max()) < 1e-12 and float(full[7:, :7].abs().max()) < 1e-12
    # and the chunk objectives add up to the full one for a block-diagonal C (sums, before the /B)
    blocks = torch.block_diag(first, second)
    total = self_expression_loss(blocks, z, 1.0) * 13
    parts = self_expression_loss(first, z[:7], 1.0) * 7 + self_expression_loss(second, z[7:], 1.0) * 6
    assert float(total) == pytest.approx(float(parts))


def test_closed_coefficients_equal_the_graph_packages_form():
    from ccli.graph.self_expressive import ridge_coefficients
    from ccli.methods.graph import closed_coefficients

    z = torch.randn(30, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    np.testing.assert_allclose(closed_coefficients(z, 0.7).numpy(), ridge_coefficients(z.numpy(), 0.7, "zero"),
                               atol=1e-10)


def test_the_chunk_partition_is_fixed_and_covers_every_sample():
    from ccli.methods.graph import Config, _chunk_parts

    parts = _chunk_parts(1797, Config(se_mode="chunk", chunk_size=300))
    assert len(parts) == 5 and sorted(np.concatenate(parts).tolist()) == list(range(1797))
    assert min(len(p) for p in parts) >= 300
    again = _chunk_parts(1797, Config(se_mode="chunk", chunk_size=300))
    assert all(np.array_equal(p, q) for p, q in zip(parts, again))
    assert [len(p) for p in _chunk_parts(50, Config(se_mode="full"))] == [50]


# ---- the joint stage's optimiser groups --------------------------------------------------------
@pytest.mark.parametrize("shared", [True, False])
def test_head_groups_cover_every_trainable_parameter_once_with_the_heads_scaled(shared):
    from ccli.methods.graph import _modules, head_groups
    from ccli.models.autoencoder import build_autoencoder

    ae = build_autoencoder("cae28", 1, 28, 32, "none")
    model = _modules()(ae, 10, 16, shared, 1, 1, 1e-8)
    groups = head_groups(model, 10.0)
    assert len(groups) == 2 and "lr_scale" not in groups[0] and groups[1]["lr_scale"] == 10.0
    first, second = ({id(p) for p in g["params"]} for g in groups)
    assert len(first) == len(groups[0]["params"]) and len(second) == len(groups[1]["params"])
    assert not first & second
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert first | second == trainable
    assert first == {id(p) for p in ae.parameters()}
    heads = [model.trunk, model.instance, model.cluster] + ([] if shared else [model.cluster_trunk])
    assert second == {id(p) for m in heads for p in m.parameters()}
    # the self-expression blocks are buffers (their own Adam), never optimiser parameters
    assert {name for name, _ in model.named_buffers()} >= {"coefficients", "c_m", "c_v", "c_steps"}


@pytest.mark.slow  # > 10 s: trains
def test_the_joint_stage_optimiser_holds_the_two_groups_at_their_rates(cli, tmp_path):
    from ccli.engine.checkpoint import load_checkpoint

    out = tmp_path / "scaled"
    result = cli(*TINY, "--set", "se_mode=closed", "--set", "head_lr_scale=10", "--set", "lr=0.001", "-o", out)
    assert result.code == 0, result.err
    groups = load_checkpoint(out / "checkpoint-joint.pt")["optimizer"]["param_groups"]
    assert [g.get("lr_scale", 1.0) for g in groups] == [1.0, 10.0]
    assert groups[0]["lr"] == pytest.approx(1e-3) and groups[1]["lr"] == pytest.approx(1e-2)


# ---- the --graph input ---------------------------------------------------------------------------
def _digits_graph(tmp_path, cli):
    from sklearn.datasets import load_digits

    from ccli.store import ArtifactWriter

    d = load_digits()
    feats = tmp_path / "raw.h5"
    with ArtifactWriter(feats, "features", "raw-digits", {"test": "raw"}) as w:
        w.write("features", d.data.astype(np.float32))
        w.write("labels", d.target.astype(np.int64))
        w.write("index", np.arange(len(d.target), dtype=np.int64))
    result = cli("graph", feats, "--self-expressive", "--chunk-size", "300", "--se-topk", "5", "-q")
    assert result.code == 0, result.err
    return result.out.strip()


def test_a_graph_input_enters_the_run_key(cli, tmp_path):
    from ccli.methods import registry

    graph = _digits_graph(tmp_path, cli)
    module = registry.load(registry.get("graph"))

    def key_for(**given):
        inputs = registry.resolve_inputs(registry.Inputs(data="digits", **given))
        inputs.keys.extend(module.key_inputs(inputs, module.Config()))
        return registry.run_key("graph", module.Config(), 10, inputs), inputs.keys

    plain, plain_keys = key_for()
    with_graph, keys = key_for(graph=graph)
    assert plain != with_graph and any(k.startswith("graph:") for k in keys)
    assert not any(k.startswith("graph:") for k in plain_keys)


@pytest.mark.slow  # > 10 s: trains
def test_a_tiny_run_in_each_se_mode_predicts_every_image(cli, tmp_path):
    import h5py

    from ccli.engine.checkpoint import load_checkpoint

    for mode in ("closed", "chunk", "full"):
        out = tmp_path / mode
        result = cli(*TINY, "--set", f"se_mode={mode}", "--set", "chunk_size=400", "-o", out)
        assert result.code == 0, result.err
        for stage in ("pretrain", "warmup", "joint"):
            assert load_checkpoint(out / f"checkpoint-{stage}.pt")["complete"]
        state = load_checkpoint(out / "checkpoint-joint.pt")["model"]
        if mode != "closed":
            blocks = state["coefficients"]
            assert blocks.shape[0] == (4 if mode == "chunk" else 1)
            assert int(state["c_steps"].min()) > 0  # every block was trained
        with h5py.File(out / "predictions.h5") as f:
            probs = f["probs"][:]
            assert f["labels"].shape == (1797,) and np.array_equal(f["labels"][:], probs.argmax(1))


@pytest.mark.slow  # > 10 s: trains
def test_a_run_from_a_self_expressive_graph_skips_the_warm_up(cli, tmp_path):
    graph = _digits_graph(tmp_path, cli)
    out = tmp_path / "from-graph"
    result = cli(*TINY, "--graph", graph, "--set", "se_mode=closed", "-o", out)
    assert result.code == 0, result.err
    assert (out / "checkpoint-joint.pt").is_file() and not (out / "checkpoint-warmup.pt").exists()


# ---- bad input -----------------------------------------------------------------------------------
def test_full_self_expression_above_the_limit_is_refused_naming_the_limit_and_the_alternatives(cli, tmp_path):
    result = cli(*TINY, "--set", "se_mode=full", "--set", "se_max_n=1000", "-o", tmp_path / "out")
    assert_bad_input(result, "se_mode=full", "se_max_n=1,000", "1,797", "se_mode=chunk", "se_mode=closed")
    assert not (tmp_path / "out").exists()
    cache = tmp_path / "cache"
    assert not cache.exists() or not any(p.is_file() for p in cache.rglob("*") if "datasets" not in p.parts)


@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_a_head_lr_scale_that_is_not_positive_is_refused_naming_the_key(cli, tmp_path, value):
    result = cli(*TINY, "--set", f"head_lr_scale={value}", "-o", tmp_path / "out")
    assert_bad_input(result, f"head_lr_scale={value} must be > 0")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("setting, needle", [
    ("instance_augment=maybe", "instance_augment"),
    ("pretrain_augment=2", "pretrain_augment"),
    ("crop_scale=[0.9,0.5]", "crop_scale=[0.9, 0.5]"),
    ("crop_scale=[0,1]", "crop_scale=[0.0, 1.0]"),
    ("blur_p=1.5", "blur_p=1.5 must be a probability"),
    ("se_codes=cosine", "se_codes"),
])
def test_bad_augmentation_keys_are_refused_naming_the_key(cli, tmp_path, setting, needle):
    result = cli(*TINY, "--set", setting, "-o", tmp_path / "out")
    assert_bad_input(result, needle)
    assert not (tmp_path / "out").exists()


def test_the_augmentation_keys_are_off_by_default_and_the_digits_preset_sets_them():
    from ccli.methods import registry

    module = registry.load(registry.get("graph"))
    faithful = module.Config()
    assert faithful.pretrain_augment is False and faithful.instance_augment is False  # Ch. 4: no augmentation
    assert faithful.crop_scale == (0.5, 1.0) and faithful.blur_p == 0.5  # spec §3.7 grayscale recipe
    assert faithful.se_codes == "raw"  # Eq. 4.2 on Z itself
    config = registry.resolve_method_config(module, "graph", "digits", sets=["instance_augment=true",
                                                                              "se_codes=centred_l2"])
    assert config.instance_augment is True and config.se_codes == "centred_l2"


@pytest.mark.slow  # > 10 s: trains
def test_a_tiny_augmented_run_trains_in_closed_and_chunk_modes(cli, tmp_path):
    from ccli.engine.checkpoint import load_checkpoint

    for mode in ("closed", "chunk"):
        out = tmp_path / mode
        result = cli(*TINY, "--set", f"se_mode={mode}", "--set", "chunk_size=599", "--set", "pretrain_augment=true",
                     "--set", "instance_augment=true", "--set", "se_codes=centred_l2", "-o", out)
        assert result.code == 0, result.err
        assert load_checkpoint(out / "checkpoint-joint.pt")["config"]["config"]["instance_augment"] is True


@pytest.mark.slow  # > 10 s: trains a selfpaced pretrain stage
def test_an_ae_checkpoint_of_another_image_size_is_refused(cli, tmp_path):
    # a selfpaced pretrain stage at 28 px given to a graph run at 32 px
    first = cli("train", "-m", "selfpaced", "--data", "digits", "--preset", "digits", "--epochs", "1",
                "--set", "pretrain_epochs=1", "--set", "stage1_epochs=0", "--set", "eval_every=0", "-q",
                "-o", tmp_path / "sp")
    assert first.code == 0, first.err
    result = cli(*TINY, "--set", "backbone=cae32", "--set", "image_size=32", "--set", "latent_dim=10",
                 "--set", f"ae_checkpoint={tmp_path / 'sp' / 'checkpoint-pretrain.pt'}", "-o", tmp_path / "out")
    assert_bad_input(result, "ae_checkpoint=", "28 px", "32 px")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("preset", ["digits", "fashion-mnist", "cifar10", "cifar100-20", "stl10"])
def test_every_preset_resolves_to_the_config(preset):
    from ccli.config import preset_metadata
    from ccli.methods import registry

    module = registry.load(registry.get("graph"))
    config = registry.resolve_method_config(module, "graph", preset)
    assert config.k == 5 and config.tau1 == 0.5 and config.tau2 == 1.0  # thesis §4.3.3
    if preset in ("cifar10", "cifar100-20", "stl10"):
        assert config.engine.epochs == 150 and config.engine.lr == 1e-4
        assert "paper_results" in preset_metadata("graph", preset)
