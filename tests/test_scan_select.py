"""scan's label-free head selection rules (ccli.methods.scan_select): values by hand, the config key's bad values."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from conftest import assert_bad_input

A = np.array([0, 0, 1, 1, 2, 2])
B = np.array([1, 1, 0, 0, 2, 2])  # A's partition under other names
C = np.array([0, 1, 0, 1, 0, 1])  # independent of A: every A cluster holds one 0 and one 1
D = np.array([0, 0, 1, 1, 1, 1])  # A with clusters 1 and 2 merged


def _nmi_a_d() -> float:
    """NMI(A, D) by hand: D is a function of A, so MI = H(D); arithmetic-mean normaliser."""
    h_d = -(1 / 3 * math.log(1 / 3) + 2 / 3 * math.log(2 / 3))
    return h_d / ((math.log(3) + h_d) / 2)


def test_pairwise_nmi_of_toy_label_sets_by_hand():
    from ccli.methods.scan_select import pairwise_nmi

    nmi = pairwise_nmi([A, B, C, D])
    x = _nmi_a_d()  # 0.7337
    expected = np.array([[1, 1, 0, x], [1, 1, 0, x], [0, 0, 1, 0], [x, x, 0, 1]])
    np.testing.assert_allclose(nmi, expected, atol=1e-12)


def test_medoid_keeps_the_head_that_agrees_most_with_the_others():
    from ccli.methods.scan_select import medoid

    # mean NMI to the others: C 0, D (0 + x + x)/3 = 0.489, A and B (0 + x + 1)/3 = 0.578 (tie: the first)
    assert medoid([C, D, A, B]) == 2
    assert medoid([C, D, B, A]) == 2
    # D agrees with both copies of A at x and with C at 0; with only one copy of A, D and A tie at x/2 → the first
    assert medoid([C, D, A]) == 1
    assert medoid([C, A, D]) == 1


def test_alignment_matches_clusters_to_the_reference_and_consensus_averages_the_matched_probabilities():
    from ccli.methods.scan_select import alignment, consensus, order_to_reference

    renamed = np.array([2, 2, 0, 0, 1, 1])  # A's clusters 0, 1, 2 are called 2, 0, 1 here
    perm = alignment(A, renamed, 3)
    assert perm.tolist() == [1, 2, 0]  # own cluster 0 is the reference's 1, 1 → 2, 2 → 0
    assert order_to_reference(perm).tolist() == [2, 0, 1]
    ref = torch.tensor([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])
    other = ref[:, [1, 2, 0]] * 0.5 + 1 / 6  # ref renamed (column c holds its column c + 1), flatter
    # matched back, the mean is (ref + (ref / 2 + 1 / 6)) / 2
    mean = consensus([ref, other], reference=0)
    torch.testing.assert_close(mean, (ref + ref * 0.5 + 1 / 6) / 2)


def test_choose_head_by_each_rule():
    from ccli.methods.scan_select import choose_head

    table = np.array([[1], [0], [3], [2], [5], [4]])  # the pairs of A's clusters
    def onehot(labels, sharp=0.9):
        p = torch.full((6, 3), (1 - sharp) / 2)
        p[torch.arange(6), torch.from_numpy(labels)] = sharp
        return p

    # head 0: A sharp; head 1: A under other names, softer (higher consistency loss); head 2: C (splits every pair)
    probs = [onehot(A), onehot(B, 0.7), onehot(C)]
    for rule, expected in (("loss", 0), ("consistency", 0), ("medoid", 0)):
        best, losses = choose_head(rule, probs, table, 5.0)
        assert best == expected, rule
        assert len(losses) == 3 and losses[0] < losses[1] < losses[2]
    # two heads agree on a partition the loss ranks below a third, sharper one: medoid and loss part ways
    probs = [onehot(C, 0.99), onehot(C[::-1].copy(), 0.99), onehot(A, 0.99), onehot(C, 0.6)]
    assert choose_head("loss", probs, table, 5.0)[0] == 2
    assert choose_head("medoid", probs, table, 5.0)[0] == 0


def test_bad_head_selection_values_exit_2_naming_the_key(cli, tmp_path):
    out = tmp_path / "never"
    base = ("train", "--method", "scan", "--data", "digits", "--preset", "digits", "-o", out)
    assert_bad_input(cli(*base, "--set", "head_selection=vote"), "head_selection", "medoid")
    assert_bad_input(cli(*base, "--set", "head_selection=medoid", "--set", "num_heads=2"), "head_selection",
                     "num_heads=2")
    assert not out.exists()


def test_the_fashion_preset_names_its_rule_and_the_default_stays_scans():
    from pathlib import Path

    from ccli.config import resolve_config
    from ccli.methods import registry

    module = registry.load(registry.get("scan"))
    assert module.Config().head_selection == "loss"  # SCAN's rule (scanplus.md §6.5) unless a preset says otherwise
    text = (Path(__file__).resolve().parents[1] / "presets" / "scan" / "fashion-mnist.yaml").read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith("head_selection:"))
    assert "§6.5" in line or "PROPOSED" in line  # the value names its source
    assert resolve_config(module.Config, "scan", "fashion-mnist").head_selection == line.split()[1]
