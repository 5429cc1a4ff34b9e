"""gcc and cctc (issue 11): losses against hand-computed values, the per-batch trend weights against
the full-matrix definition, the graph parts, the queue across a resume, and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.conftest import assert_bad_input


# ------------------------------------------------------------------------------------------
# Losses (ccli.losses.gcc, ccli.losses.trend)
# ------------------------------------------------------------------------------------------
def _unit(*rows):
    return F.normalize(torch.tensor(rows, dtype=torch.float64), dim=1)


def test_warm_instance_loss_matches_the_hand_computed_value():
    from ccli.losses.gcc import warm_instance_loss

    u, v = _unit([1.0, 0.0], [0.0, 1.0]), _unit([1.0, 1.0], [1.0, -1.0])
    tau = 0.5
    s = 1 / math.sqrt(2)
    # anchor 0: u0·u0 = 1, u0·u1 = 0, u0·v0 = s, u0·v1 = s; anchor 1: 0, 1, s, −s
    l0 = -math.log(math.exp(s / tau) / (math.exp(2) + math.exp(0) + math.exp(s / tau) + math.exp(s / tau)))
    l1 = -math.log(math.exp(-s / tau) / (math.exp(0) + math.exp(2) + math.exp(s / tau) + math.exp(-s / tau)))
    assert warm_instance_loss(u, v, tau).item() == pytest.approx((l0 + l1) / 2, abs=1e-12)


def test_rgc_loss_matches_the_hand_computed_value_and_omega_zero_leaves_the_view_term():
    from ccli.losses.gcc import rgc_loss

    u, v = _unit([1.0, 0.0], [0.0, 1.0]), _unit([1.0, 1.0], [1.0, -1.0])
    n = _unit([1.0, 0.0], [1.0, 1.0])[:, None, :]  # one neighbour per anchor (T = 1)
    omega = torch.tensor([[0.5], [2.0]], dtype=torch.float64)
    r = n * omega[:, :, None]
    tau, s = 0.5, 1 / math.sqrt(2)
    e = math.exp
    # anchor 0: positives u0·v0 = s and ω0 e^{u0·r0/τ}, u0·r0 = 0.5; negatives u0·u0 = 1, u0·u1 = 0, u0·v1 = s, u0·r1 = 2s
    num0 = e(s / tau) + 0.5 * e(0.5 / tau)
    den0 = e(1 / tau) + e(0) + e(s / tau) + e(2 * s / tau)
    # anchor 1: u1·v1 = −s, u1·r1 = 2s (ω = 2); negatives u1·u0 = 0, u1·u1 = 1, u1·v0 = s, u1·r0 = 0
    num1 = e(-s / tau) + 2.0 * e(2 * s / tau)
    den1 = e(0) + e(1 / tau) + e(s / tau) + e(0)
    expected = -(math.log(num0 / den0) + math.log(num1 / den1)) / 2
    assert rgc_loss(u, v, r, omega, tau).item() == pytest.approx(expected, abs=1e-12)
    # exclude_self drops e^{u_i·u_i/τ} from each denominator
    ex = -(math.log(num0 / (den0 - e(1 / tau))) + math.log(num1 / (den1 - e(1 / tau)))) / 2
    assert rgc_loss(u, v, r, omega, tau, exclude_self=True).item() == pytest.approx(ex, abs=1e-12)
    # ω = 0: the numerator is the other view's term alone
    zero = torch.zeros_like(omega)
    num0, num1 = e(s / tau), e(-s / tau)
    den0, den1 = e(1 / tau) + e(0) + e(s / tau) + e(0), e(0) + e(1 / tau) + e(s / tau) + e(0)
    assert rgc_loss(u, v, n * 0, zero, tau).item() == pytest.approx(
        -(math.log(num0 / den0) + math.log(num1 / den1)) / 2, abs=1e-12)


def test_agc_cluster_loss_and_the_balance_term_match_hand_values():
    from ccli.losses.gcc import agc_cluster_loss, balance_term

    uniform = torch.full((4, 3), 1 / 3, dtype=torch.float64)
    one_hot = torch.zeros((4, 3), dtype=torch.float64)
    one_hot[:, 1] = 1
    assert balance_term(uniform).item() == pytest.approx(0.0, abs=1e-12)
    assert balance_term(one_hot).item() == pytest.approx(math.log(3), abs=1e-6)
    p1 = torch.tensor([[0.9, 0.1], [0.2, 0.8]], dtype=torch.float64)
    p2 = torch.tensor([[0.6, 0.4], [0.3, 0.7]], dtype=torch.float64)
    tau, lam = 1.0, 0.5

    def cos(a, b):
        return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))

    c1 = [[0.9, 0.2], [0.1, 0.8]]  # columns of p1
    c2 = [[0.6, 0.3], [0.4, 0.7]]
    ce = 0.0
    for k in range(2):
        logits = [cos(c1[k], c2[j]) / tau for j in range(2)]
        ce += -(logits[k] - math.log(sum(math.exp(x) for x in logits)))
    marginal = [(0.9 + 0.2) / 2, (0.1 + 0.8) / 2]
    l_au = math.log(2) + sum(m * math.log(m) for m in marginal)
    assert agc_cluster_loss(p1, p2, tau, lam).item() == pytest.approx(ce / 2 + lam * l_au, abs=1e-12)
    assert agc_cluster_loss(p1, p1, tau, 0.0) < agc_cluster_loss(p1, p1[[1, 0]], tau, 0.0)


def test_consistency_losses_are_the_weighted_exp_sum_over_b_squared():
    from ccli.losses.trend import cluster_consistency_loss, instance_consistency_loss

    z = _unit([1.0, 0.0], [0.0, 1.0], [1.0, 1.0])
    w = torch.tensor([[0, 0.9, 0], [0.9, 0, 0.95], [0, 0.95, 0]], dtype=torch.float64)
    s = 1 / math.sqrt(2)
    expected = (2 * 0.9 * math.exp(0) + 2 * 0.95 * math.exp(-s)) / 9  # the actual B = 3, not N²
    assert instance_consistency_loss(w, z).item() == pytest.approx(expected, abs=1e-12)
    assert instance_consistency_loss(w, z, "pairs").item() == pytest.approx(expected * 9 / 4, abs=1e-12)
    y = torch.tensor([[0.9, 0.1], [0.5, 0.5], [0.1, 0.9]], dtype=torch.float64)
    cos01 = (0.45 + 0.05) / math.sqrt(0.82 * 0.5)
    cos12 = (0.05 + 0.45) / math.sqrt(0.5 * 0.82)
    assert cluster_consistency_loss(w, y).item() == pytest.approx(
        (2 * 0.9 * math.exp(-cos01) + 2 * 0.95 * math.exp(-cos12)) / 9, abs=1e-12)
    # the gradient raises the cosine of the selected pairs: a step along −grad lowers the loss
    zz = z.clone().requires_grad_(True)
    instance_consistency_loss(w, zz).backward()
    moved = zz - 0.1 * zz.grad
    assert instance_consistency_loss(w, moved) < instance_consistency_loss(w, z)


# ------------------------------------------------------------------------------------------
# The trend module (ccli.methods.trend)
# ------------------------------------------------------------------------------------------
def test_the_queue_is_a_fifo_of_hard_labels_and_empty_slots_never_agree():
    from ccli.methods.trend import TrendQueue

    q = TrendQueue(num_samples=2, window=3, num_clusters=4)
    labels = [[0, 1], [2, 1], [3, 1], [1, 1]]
    for pushed, row in enumerate(labels, start=1):
        probs = F.one_hot(torch.tensor(row), 4).float() * 0.7 + 0.075
        q.push(probs)
        assert q.full() == (pushed >= 3)
    assert q.labels.dtype == torch.int16
    assert q.labels.tolist() == [[2, 3, 1], [1, 1, 1]]
    fresh = TrendQueue(num_samples=2, window=3, num_clusters=2)
    fresh.soft.fill_(0.5)
    assert fresh.weights(torch.tensor([0, 1]), 1e-6).abs().sum() == 0  # −1 against −1 is no agreement


def _full_matrices(c: np.ndarray, p: np.ndarray, w: int):
    """M, S and M_S over all N × N pairs, straight from the definitions (§8.3.2–8.3.4)."""
    agree = (c[:, None, :] == c[None, :, :]) & (c[:, None, :] >= 0)  # a −1 slot never agrees
    m = agree.sum(-1).astype(np.float32) / w
    s = p @ p.T
    ms = m * s
    np.fill_diagonal(ms, 0.0)
    return m, s, ms


def test_per_batch_trend_weights_equal_the_full_matrix_definition():
    from ccli.methods.trend import batch_trend_weights

    rng = np.random.default_rng(0)
    n, k, w = 512, 10, 3
    c = rng.integers(0, 3, size=(n, w)).astype(np.int16)  # few labels: many agreeing pairs
    c[rng.random((n, w)) < 0.05] = -1
    logits = rng.normal(size=(n, k)) * 4
    p = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype(np.float32)
    m, s, ms = _full_matrices(c, p, w)
    for trial in range(5):
        idx = rng.choice(n, size=64, replace=False)
        for delta in (0.3, 0.85):
            got = batch_trend_weights(torch.from_numpy(c[idx]), torch.from_numpy(p[idx]), w, delta).numpy()
            block = ms[np.ix_(idx, idx)]
            np.testing.assert_allclose(got, block * (block >= delta), rtol=1e-6, atol=1e-7)
        got_m = batch_trend_weights(torch.from_numpy(c[idx]), torch.from_numpy(p[idx]), w, 0.6, "M").numpy()
        block_m = m[np.ix_(idx, idx)].copy()
        np.fill_diagonal(block_m, 0)
        np.testing.assert_array_equal(got_m, block_m * (block_m >= 0.6))
    # §8.3 property 6: with δ = 0.85 and w ≤ 6 a selected pair has one label history and S ≥ δ
    idx = np.arange(n)
    sel = batch_trend_weights(torch.from_numpy(c), torch.from_numpy(p), w, 0.85).numpy() > 0
    ii, jj = np.nonzero(sel)
    assert len(ii) > 0
    assert (c[ii] == c[jj]).all() and (s[ii, jj] >= 0.85 - 1e-6).all()


def test_delta_switches_at_the_configured_epoch():
    from ccli.methods.trend import delta_at

    assert delta_at(399, 0.85, 0.9, 400) == 0.85
    assert delta_at(400, 0.85, 0.9, 400) == 0.9


# ------------------------------------------------------------------------------------------
# The graph parts (ccli.methods.graph_contrast)
# ------------------------------------------------------------------------------------------
def test_knn_table_node_weights_and_artifact_rows():
    from ccli.methods.graph_contrast import knn_table, node_weights, table_with_self

    rng = np.random.default_rng(1)
    feats = torch.from_numpy(rng.normal(size=(50, 8)).astype(np.float32))
    table = knn_table(feats, 3, chunk=7)
    brute = np.argsort(-(feats @ feats.t()).numpy(), axis=1, kind="stable")[:, :4]
    sims = (feats @ feats.t()).numpy()
    np.testing.assert_allclose(np.take_along_axis(sims, table.numpy(), 1), np.take_along_axis(sims, brute, 1), rtol=1e-6)
    # 𝒩(0) = {0, 1} ∪ {2} (row 2 points at 0); 𝒩(1) = {1, 0}; 𝒩(2) = {2, 0}
    tiny = torch.tensor([[0, 1], [1, 0], [2, 0]])
    np.testing.assert_allclose(node_weights(tiny).numpy(), [math.sqrt(3 / 3), math.sqrt(3 / 2), math.sqrt(3 / 2)],
                               rtol=1e-6)
    rows = table_with_self(np.array([[2, -1], [0, 2], [-1, -1]]), k=3)
    assert rows.tolist() == [[0, 2, 0, 0], [1, 0, 2, 1], [2, 2, 2, 2]]


def test_feature_memory_is_a_fifo_whose_mean_builds_the_graph():
    from ccli.methods.graph_contrast import GraphModel

    net = torch.nn.Module()
    net.backbone = torch.nn.Identity()
    model = GraphModel(net, num_samples=3, feature_dim=2, memory_size=2, k=1)
    for value in (1.0, 2.0, 4.0):
        model.remember(torch.tensor([0]), torch.tensor([[value, 0.0]]))
    model.remember(torch.tensor([1, 2]), torch.tensor([[0.0, 1.0], [0.0, -1.0]]))
    np.testing.assert_allclose(model.memory_features().numpy(), [[3.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    model.rebuild_graph()
    assert model.table[:, 0].tolist() == [0, 1, 2]


# ------------------------------------------------------------------------------------------
# Runs: the queue across a resume, bad input
# ------------------------------------------------------------------------------------------
def _tiny_npz(path, n=128):
    from sklearn.datasets import load_digits

    d = load_digits()
    images = (d.images[:n] * 16).clip(0, 255).astype(np.uint8)[..., None]
    np.savez(path, images=images, labels=d.target[:n].astype(np.int64))
    return f"npz:{path}"


TINY = ["backbone=small_cnn", "image_size=null", "batch_size=32", "optimizer=adam", "lr=1e-3", "schedule=constant",
        "knn_every=0", "eval_every=0", "threads=1", "simclr_epochs=1", "window=2", "trend_start=3", "delta1=0.3",
        "delta2=0.5", "delta_switch=4", "tau=0.5", "flip_p=0"]


def _train(data, out, epochs=5, sets=()):
    from ccli.methods import registry

    module = registry.load(registry.get("cctc"))
    config = registry.resolve_method_config(module, "cctc", None, TINY + list(sets), {"--epochs": epochs})
    return registry.train("cctc", registry.Inputs(data=data), config, out=out, device="cpu")


def test_the_trend_queue_is_checkpointed_and_survives_a_resume(tmp_path, monkeypatch):
    from ccli.engine.checkpoint import load_checkpoint
    from ccli.methods import trend

    monkeypatch.setenv("CCLI_CACHE", str(tmp_path / "cache"))
    data = _tiny_npz(tmp_path / "d.npz")
    whole = _train(data, tmp_path / "whole")
    final = load_checkpoint(tmp_path / "whole" / "checkpoint-trend.pt")["model"]
    assert int(final["trend.pushes"]) == 3  # epochs 2, 3, 4 (0-based) start with a snapshot
    assert (final["trend.labels"] >= 0).all()

    pushes = {"n": 0}
    real_push = trend.TrendQueue.push

    def push_then_stop(self, probs):
        pushes["n"] += 1
        if pushes["n"] == 3:  # the start of absolute epoch 4, the second S2 epoch: killed here
            raise KeyboardInterrupt
        real_push(self, probs)

    monkeypatch.setattr(trend.TrendQueue, "push", push_then_stop)
    with pytest.raises(KeyboardInterrupt):
        _train(data, tmp_path / "cut")
    saved = load_checkpoint(tmp_path / "cut" / "checkpoint-trend.pt")
    assert saved["epoch"] == 3 and int(saved["model"]["trend.pushes"]) == 2  # trend-stage epochs 1–3 done
    assert (saved["model"]["trend.labels"] >= 0).all()  # the full queue is in the checkpoint
    monkeypatch.setattr(trend.TrendQueue, "push", real_push)
    resumed = _train(data, tmp_path / "cut")
    again = load_checkpoint(tmp_path / "cut" / "checkpoint-trend.pt")["model"]
    assert torch.equal(again["trend.labels"], final["trend.labels"])
    assert torch.equal(again["trend.soft"], final["trend.soft"])
    for key in final:
        assert torch.equal(again[key], final[key]), key
    assert resumed.scores == whole.scores


def test_s1_and_s2_are_one_stage_with_one_optimiser(tmp_path, monkeypatch):
    """§12.3's single loop: no "gcc" stage; the trend terms start at E1 = 3 without a new optimiser."""
    import json

    from ccli.engine.checkpoint import load_checkpoint

    monkeypatch.setenv("CCLI_CACHE", str(tmp_path / "cache"))
    _train(_tiny_npz(tmp_path / "d.npz"), tmp_path / "run", sets=["delta1=0.05", "delta2=0.1"])  # S of a near-uniform head is small
    assert sorted(p.name for p in (tmp_path / "run").glob("checkpoint-*.pt")) == ["checkpoint-trend.pt",
                                                                                 "checkpoint-warmup.pt"]
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    trend = [r for r in rows if r.get("stage") == "trend" and "trend_pairs" in r]
    assert [r["epoch"] for r in trend] == [1, 2, 3, 4]  # absolute epochs 1–4 after 1 warm-up epoch
    assert [r["trend_pairs"] for r in trend[:2]] == [0.0, 0.0]  # S1: absolute epochs 1, 2 < E1 = 3
    assert [r["trend_z"] for r in trend[:2]] == [0.0, 0.0]
    assert all(r["trend_pairs"] > 0 and r["trend_z"] > 0 for r in trend[2:])  # S2
    assert [round(r["delta"], 6) for r in trend] == [0.05, 0.05, 0.05, 0.1]  # δ2 from absolute epoch 4
    adam = load_checkpoint(tmp_path / "run" / "checkpoint-trend.pt")["optimizer"]["state"]
    assert {int(state["step"]) for state in adam.values()} == {16}  # 4 epochs × 4 steps of 32: S1's and S2's


def _neighbors(path, n, k=5):
    from ccli.store import ArtifactWriter

    with ArtifactWriter(path, "neighbors", "nb", {"k": k}, ["raw"], attrs={"k": k, "exclude_self": True}) as w:
        w.write("indices", ((np.arange(n)[:, None] + np.arange(1, k + 1)[None, :]) % n).astype(np.int64))
        w.write("scores", np.ones((n, k), dtype=np.float32))
    return path


@pytest.mark.parametrize("sets, needles", [
    (["window=1"], ["window=1", "at least 2"]),
    (["delta1=0"], ["delta1=0", "(0, 1]"]),
    (["delta2=1.2"], ["delta2=1.2", "(0, 1]"]),
    (["delta1=0.95", "delta2=0.9"], ["delta1=0.95", "delta2=0.9"]),
    (["trend_matrix=X"], ["trend_matrix", "MS, M, none"]),
    (["trend_start=200"], ["trend_start=200"]),
])
def test_bad_trend_settings_are_refused_before_anything_is_written(cli, tmp_path, sets, needles):
    out = tmp_path / "run"
    args = ["train", "--method", "cctc", "--data", "digits", "--preset", "digits", "-o", out]
    for s in sets:
        args += ["--set", s]
    assert_bad_input(cli(*args), *needles)
    assert not out.exists()
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.h5"))


@pytest.mark.parametrize("method", ["gcc", "cctc"])
def test_a_neighbour_artifact_of_another_dataset_size_is_refused(cli, tmp_path, method):
    out = tmp_path / "run"
    small = _neighbors(tmp_path / "small.h5", n=1000)
    assert_bad_input(cli("train", "--method", method, "--data", "digits", "--preset", "digits", "--neighbors", small,
                         "-o", out), "--neighbors", "1,000 rows", "1,797 images")
    assert not out.exists()
    assert_bad_input(cli("train", "--method", method, "--data", "digits", "--preset", "digits", "--set",
                         "simclr_epochs=200", "-o", out), "simclr_epochs=200")


def test_a_neighbour_artifact_is_the_fixed_graph_of_a_gcc_run(tmp_path, monkeypatch):
    from ccli.engine.checkpoint import load_checkpoint
    from ccli.methods import registry
    from ccli.methods.graph_contrast import table_with_self

    monkeypatch.setenv("CCLI_CACHE", str(tmp_path / "cache"))
    data = _tiny_npz(tmp_path / "d.npz")
    nb = _neighbors(tmp_path / "nb.h5", n=128)
    module = registry.load(registry.get("gcc"))
    sets = [s for s in TINY if s.split("=")[0] not in ("window", "trend_start", "delta1", "delta2", "delta_switch")]
    config = registry.resolve_method_config(module, "gcc", None, sets, {"--epochs": 3})
    result = registry.train("gcc", registry.Inputs(data=data, neighbors=nb), config, out=tmp_path / "run", device="cpu")
    assert result.scores is not None
    state = load_checkpoint(tmp_path / "run" / "checkpoint-gcc.pt")["model"]
    expected = table_with_self((np.arange(128)[:, None] + np.arange(1, 6)[None, :]) % 128, k=5)
    assert state["table"].tolist() == expected.tolist()
    assert int(state["graph_built"]) == 1  # set from the artifact once, never rebuilt from the memory
    assert int(state["memory_filled"].sum()) == 4 * 32  # only the warm-up epoch filled the memory
