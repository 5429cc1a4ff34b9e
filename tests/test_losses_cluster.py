"""Loss values of issue 5 (decoupled, cluster-level, entropy) against hand-computed double loops.

The double loops below are written straight from the equations in dcacn.md §5 with Python
floats, independent of the vectorised code. dcacn.md §5.6 quotes checked values (DCL 2.25620,
NT-Xent 2.43501) but not the inputs that produced them, so that example cannot be reproduced;
the small fully specified examples here take its place.
"""

from __future__ import annotations

import math

import pytest
import torch

from ccli.losses.cluster import cluster_contrastive_loss, entropy_regulariser
from ccli.losses.decoupled import decoupled_cluster_loss, decoupled_contrastive_loss, mean_over_pairs
from ccli.losses.nt_xent import multicrop_pairs, nt_xent


def _normalise(rows):
    out = []
    for r in rows:
        norm = math.sqrt(sum(v * v for v in r))
        out.append([v / norm for v in r])
    return out


def _dot(u, v):
    return sum(x * y for x, y in zip(u, v))


def _loop_contrastive(a, b, tau, keep_positive):
    """Mean over anchors i and both directions of -log(e^{s_ii'}/denominator), with the positive
    in the denominator (NT-Xent) or not (DCL, Eq. 6)."""
    a, b = _normalise(a), _normalise(b)
    n = len(a)
    total = 0.0
    for x, y in ((a, b), (b, a)):
        for i in range(n):
            positive = _dot(x[i], y[i]) / tau
            denominator = math.exp(positive) if keep_positive else 0.0
            for j in range(n):
                if j == i:
                    continue
                denominator += math.exp(_dot(x[i], x[j]) / tau) + math.exp(_dot(x[i], y[j]) / tau)
            total += -positive + math.log(denominator)
    return total / (2 * n)


def _loop_entropy(p):
    k = len(p[0])
    column_sums = [sum(row[c] for row in p) for c in range(k)]
    total = sum(column_sums)
    return math.log(k) + sum((s / total) * math.log(s / total) for s in column_sums if s > 0)


def _transpose(rows):
    return [list(col) for col in zip(*rows)]


A = [[0.3, -1.2, 0.5], [1.1, 0.4, -0.7], [-0.6, 0.9, 0.8], [0.2, 0.1, -1.5]]
B = [[0.5, -1.0, 0.2], [0.8, 0.7, -0.4], [-0.9, 0.6, 1.0], [0.4, -0.3, -1.1]]
P_A = [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.6, 0.3, 0.1]]
P_B = [[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1]]


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def test_decoupled_on_a_case_small_enough_to_do_by_hand():
    # Identical orthogonal views, tau = 1: each anchor has positive sim 1 and two negatives of
    # sim 0, so every term is -1 + log(e^0 + e^0) = log 2 - 1. NT-Xent keeps e^1 in the sum.
    eye = torch.eye(2, dtype=torch.float64)
    assert decoupled_contrastive_loss(eye, eye, 1.0).item() == pytest.approx(math.log(2) - 1, abs=1e-12)
    assert math.log(2) - 1 < 0  # DCL can be negative and must not be clamped
    assert nt_xent(eye, eye, 1.0).item() == pytest.approx(math.log(1 + 2 / math.e), abs=1e-6)  # float32 inside


@pytest.mark.parametrize("tau", [0.5, 0.2])
def test_decoupled_matches_double_loop(tau):
    expected = _loop_contrastive(A, B, tau, keep_positive=False)
    assert decoupled_contrastive_loss(t(A), t(B), tau).item() == pytest.approx(expected, abs=1e-10)


def test_decoupled_excludes_the_positive_from_the_denominator():
    # Keeping the positive would reproduce NT-Xent: the two must differ, and ours is the one
    # without it.
    with_positive = _loop_contrastive(A, B, 0.5, keep_positive=True)
    without = _loop_contrastive(A, B, 0.5, keep_positive=False)
    value = decoupled_contrastive_loss(t(A), t(B), 0.5).item()
    assert value == pytest.approx(without, abs=1e-10)
    assert abs(value - with_positive) > 1e-2
    # Direct check: move only the positive pair (row 0 of view b) in a direction orthogonal to
    # every other vector. No negative similarity changes, so with the positive out of the
    # denominator the loss is exactly linear in cos(θ): L = const - 2cos θ / (2Nτ).
    n, tau = 3, 0.5
    others_a = [[0, 1, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0]]
    others_b = [[0, 1, 1, 0, 0, 0], [0, 0, 1, 1, 0, 0]]

    def loss_at(theta):
        a = t([[1, 0, 0, 0, 0, 0]] + others_a)
        b = t([[math.cos(theta), 0, 0, 0, 0, math.sin(theta)]] + others_b)
        return decoupled_contrastive_loss(a, b, tau).item()

    for theta in (0.3, 1.0, 2.5):
        expected_change = -(math.cos(theta) - math.cos(0.1)) / (n * tau)
        assert loss_at(theta) - loss_at(0.1) == pytest.approx(expected_change, abs=1e-12)


@pytest.mark.parametrize("mode", ["row", "column"])
def test_decoupled_cluster_loss_matches_double_loop(mode):
    a, b = (P_A, P_B) if mode == "row" else (_transpose(P_A), _transpose(P_B))
    expected = _loop_contrastive(a, b, 1.0, keep_positive=False)
    assert decoupled_cluster_loss(t(P_A), t(P_B), 1.0, mode=mode).item() == pytest.approx(expected, abs=1e-10)
    with_entropy = expected + 0.5 * (_loop_entropy(P_A) + _loop_entropy(P_B))
    value = decoupled_cluster_loss(t(P_A), t(P_B), 1.0, mode=mode, entropy_weight=0.5).item()
    assert value == pytest.approx(with_entropy, abs=1e-10)


def test_entropy_term_values():
    # π = [0.7, 0.3]: log 2 + 0.7 ln 0.7 + 0.3 ln 0.3 = 0.693147 - 0.249672 - 0.361192
    assert entropy_regulariser(t([[0.9, 0.1], [0.5, 0.5]])).item() == pytest.approx(0.0822826, abs=1e-6)
    assert entropy_regulariser(t([[1.0, 0.0], [1.0, 0.0]])).item() == pytest.approx(math.log(2), abs=1e-12)
    assert entropy_regulariser(t([[0.5, 0.5], [0.2, 0.8], [0.8, 0.2]])).item() == pytest.approx(0.0, abs=1e-12)
    assert entropy_regulariser(t(P_A)).item() == pytest.approx(_loop_entropy(P_A), abs=1e-12)


def test_cc_cluster_loss_is_column_nt_xent_plus_entropy():
    # CC's ClusterLoss: NT-Xent over the 2K columns (positive in the denominator), tau_c = 1,
    # plus log K - H(π) for each view.
    contrast = _loop_contrastive(_transpose(P_A), _transpose(P_B), 1.0, keep_positive=True)
    entropy = _loop_entropy(P_A) + _loop_entropy(P_B)
    # nt_xent computes in float32, hence the looser tolerance.
    assert cluster_contrastive_loss(t(P_A), t(P_B), 1.0).item() == pytest.approx(contrast + entropy, abs=1e-6)
    assert cluster_contrastive_loss(t(P_A), t(P_B), 1.0, entropy_weight=0.0).item() == pytest.approx(contrast, abs=1e-6)


def test_mean_over_multi_crop_pairs():
    views = [t(A), t(B), t(B) + 0.3]
    pairs = multicrop_pairs(2, 1)
    assert pairs == [(0, 1), (0, 2), (1, 2)]
    expected = sum(decoupled_contrastive_loss(views[i], views[j], 0.5).item() for i, j in pairs) / len(pairs)
    assert mean_over_pairs(lambda x, y: decoupled_contrastive_loss(x, y, 0.5), views, pairs).item() == pytest.approx(expected)


def test_losses_are_differentiable_and_float32_under_half_inputs():
    a = torch.randn(8, 16, requires_grad=True)
    b = torch.randn(8, 16, requires_grad=True)
    loss = decoupled_contrastive_loss(a.bfloat16(), b.bfloat16(), 0.5)
    assert loss.dtype == torch.float32
    loss.backward()
    assert a.grad is not None and torch.isfinite(a.grad).all()
