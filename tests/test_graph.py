"""ccli graph: GCC's kNN adjacency / Laplacian / node weights and the self-expressive graph,
checked against formulas and direct solves; the command's artifacts, cache and bad inputs (issue 4)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.csgraph import laplacian

from ccli.graph.build import read_csr
from ccli.graph.knn_graph import gcc_node_weights, knn_adjacency, neighbor_table, normalized_laplacian
from ccli.graph.self_expressive import (
    SelfExpressiveParams,
    affinity,
    chunks,
    learned_coefficients,
    ridge_coefficients,
    self_expressive_graph,
    top_entries_mask,
)
from ccli.losses.self_expressive import self_expression_loss
from ccli.store import open_artifact
from tests.test_neighbors import _assert_bad, blobs, run_cli, write_features

TABLE = np.array([[1, 2], [0, 2], [0, 1], [2, 4], [3, 0]])  # 5 points, k = 2



@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Any run without --cache-dir writes into the test's folder, never the user's cache."""
    monkeypatch.setenv("CCLI_CACHE", str(tmp_path / "default-cache"))

# -- kNN graph ---------------------------------------------------------------------------------
def test_adjacency_is_the_symmetric_union():
    a = knn_adjacency(TABLE).toarray()
    expected = np.zeros((5, 5))
    for i, row in enumerate(TABLE):
        for j in row:
            expected[i, j] = expected[j, i] = 1
    np.testing.assert_array_equal(a, expected)
    assert (a == a.T).all() and (np.diag(a) == 0).all()


def test_adjacency_drops_self_and_padding():
    a = knn_adjacency(np.array([[0, 1], [1, -1], [2, 0]])).toarray()
    assert (np.diag(a) == 0).all() and a[0, 1] == a[1, 0] == 1 and a[2, 0] == a[0, 2] == 1 and a.sum() == 4


def test_normalized_laplacian_matches_scipy_and_formula():
    a = knn_adjacency(TABLE)
    lap = normalized_laplacian(a).toarray()
    np.testing.assert_allclose(lap, laplacian(a.toarray(), normed=True), atol=1e-6)
    d = a.toarray().sum(1)
    formula = np.eye(5) - a.toarray() / np.sqrt(np.outer(d, d))
    np.testing.assert_allclose(lap, formula, atol=1e-6)
    assert (lap == lap.T).all()


def test_isolated_node_follows_scipy_convention():
    a = sp.csr_matrix(np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=np.float32))
    np.testing.assert_allclose(normalized_laplacian(a).toarray(), laplacian(a.toarray(), normed=True), atol=1e-6)


def test_gcc_weights_match_gcc_laplace_transform():
    # GCC's MemoryBank.laplace_transform, re-stated: the (k+1)-NN table lists self first;
    # N(j) = row j ∪ {i : j in row i}; weight sqrt(3 / |N(j)|).
    with_self = np.concatenate([np.arange(5)[:, None], TABLE], axis=1)
    sets = {i: set() for i in range(5)}
    for i, row in enumerate(with_self):
        for value in row:
            sets[i].add(int(value))
            sets[int(value)].add(i)
    expected = np.array([np.sqrt(3.0 / len(sets[j])) for j in range(5)])
    np.testing.assert_allclose(gcc_node_weights(knn_adjacency(TABLE), 3), expected, rtol=1e-6)


def test_neighbor_table_removes_self_when_stored():
    stored = np.array([[0, 1, 2], [1, 2, 0], [2, 0, 1]])
    np.testing.assert_array_equal(neighbor_table(stored, 2, has_self=True), [[1, 2], [2, 0], [0, 1]])


# -- self-expression ---------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(12, 5), (6, 9)])  # d < B (Woodbury branch) and d ≥ B
def test_unconstrained_ridge_equals_normal_equations(shape):
    z = np.random.default_rng(0).standard_normal(shape)
    lam = 0.7
    g = z @ z.T
    # Normal equations of min ‖C‖²_F + λ‖Z − CZ‖²_F: C (I + λG) = λG.
    direct = np.linalg.solve((np.eye(len(z)) + lam * g).T, (lam * g).T).T
    np.fill_diagonal(direct, 0.0)
    np.testing.assert_allclose(ridge_coefficients(z, lam, "zero"), direct, atol=1e-10)


@pytest.mark.parametrize("shape", [(12, 5), (6, 9)])
def test_exact_ridge_equals_per_row_constrained_solve(shape):
    z = np.random.default_rng(1).standard_normal(shape)
    lam = 2.0
    b = len(z)
    c = ridge_coefficients(z, lam, "exact")
    for i in range(b):
        others = np.delete(np.arange(b), i)
        zo = z[others]
        # Row i with c_ii = 0: min ‖c‖² + λ‖z_i − c Z_{-i}‖², normal equations c (I + λ Z_{-i}Z_{-i}ᵀ) = λ z_i Z_{-i}ᵀ.
        row = np.linalg.solve(np.eye(b - 1) + lam * zo @ zo.T, lam * zo @ z[i])
        np.testing.assert_allclose(c[i, others], row, atol=1e-10)
        assert c[i, i] == 0.0


def test_exact_ridge_beats_zeroed_unconstrained_on_the_constrained_objective():
    z = np.random.default_rng(2).standard_normal((10, 4))

    def objective(c):
        return (c**2).sum() + 1.5 * ((z - c @ z) ** 2).sum()

    assert objective(ridge_coefficients(z, 1.5, "exact")) <= objective(ridge_coefficients(z, 1.5, "zero")) + 1e-12


def test_learned_form_converges_to_the_closed_form():
    z = np.random.default_rng(3).standard_normal((16, 6))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    params = SelfExpressiveParams(mode="learned", lam=1.0, steps=1500, lr=2e-2, device="cpu")
    learned = learned_coefficients(z, params, seed=0)
    exact = ridge_coefficients(z, 1.0, "exact")
    assert np.abs(learned - exact).max() < 2e-3
    assert (np.diag(learned) == 0).all()


def test_self_expression_loss_by_hand():
    import torch

    z = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    c = torch.tensor([[0.0, 0.5], [0.25, 0.0]])
    # CZ = [[0, 1], [0.25, 0]]; residual = [[1, -1], [-0.25, 2]] → 1 + 1 + 0.0625 + 4 = 6.0625;
    # ‖C‖²_F = 0.3125, ‖C‖_1 = 0.75; B = 2.
    assert self_expression_loss(c, z, lam=2.0).item() == pytest.approx((0.3125 + 2 * 6.0625) / 2)
    assert self_expression_loss(c, z, lam=1.0, norm="l1").item() == pytest.approx((0.75 + 6.0625) / 2)


def test_affinity_and_top_entries():
    c = np.array([[0, 3, -1, 0], [1, 0, 0, 2], [0, 5, 0, 1], [1, 1, 1, 0]], dtype=float)
    a = affinity(c, "signed")
    np.testing.assert_array_equal(a, c + c.T)
    np.testing.assert_array_equal(affinity(c, "abs"), np.abs(c) + np.abs(c.T))
    mask = top_entries_mask(a, 1)
    assert (mask == mask.T).all() and not mask.diagonal().any()
    for i in range(4):
        assert mask[i, int(np.argmax(np.where(np.eye(4, dtype=bool)[i], -np.inf, a[i])))]


def test_self_expressive_graph_structure():
    x, _ = blobs(n=90, d=6)
    params = SelfExpressiveParams(chunk_size=30, topk=4, seed=3)
    graph = self_expressive_graph(x, params)
    dense = graph.toarray()
    np.testing.assert_array_equal(dense, dense.T)
    assert (np.diag(dense) == 0).all()
    parts = chunks(90, 30, 3)
    block = np.zeros(90, dtype=int)
    for number, members in enumerate(parts):
        block[members] = number
    rows, cols = graph.nonzero()
    assert (block[rows] == block[cols]).all()  # block-diagonal C: no edge leaves its chunk
    # Each row keeps at least its own top-4 of the chunk's A = C + Cᵀ.
    members = np.sort(parts[0])
    z = x[members] / np.linalg.norm(x[members], axis=1, keepdims=True)
    a = affinity(ridge_coefficients(z, 1.0, "exact"))
    np.fill_diagonal(a, -np.inf)
    for local, node in enumerate(members):
        top = members[np.argsort(-a[local])[:4]]
        assert (dense[node, top] != 0).all()


def test_chunks_partition_evenly():
    parts = chunks(2503, 1000, 0)
    assert sorted(len(p) for p in parts) == [834, 834, 835]
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(2503))


# -- the command -------------------------------------------------------------------------------------
@pytest.fixture
def features(tmp_path):
    x, labels = blobs(n=120, d=8)
    return write_features(tmp_path / "features.h5", x, labels)


def test_cli_knn_graph_from_neighbors(tmp_path, monkeypatch, capsys, features):
    cache = tmp_path / "cache"
    code, out, err = run_cli(monkeypatch, capsys, ["neighbors", features, "-k", "6", "--cache-dir", cache, "-q"])
    neighbors = out.strip()
    code, out, err = run_cli(monkeypatch, capsys, ["graph", neighbors, "--knn", "4", "--features", features, "--cache-dir", cache])
    assert code == 0, err
    path = Path(out.strip())
    with open_artifact(neighbors, "neighbors") as nb:
        table = nb.read("indices")[:, :4]
    with open_artifact(path, "graph") as art:
        adjacency = read_csr(art)
        lap = read_csr(art, "laplacian/")
        weights = art.read("weights")
        assert art.attr("builder") == "knn" and art.attr("k") == 4 and len(art.read("labels")) == 120
    expected = knn_adjacency(table)
    assert (adjacency != expected).nnz == 0
    np.testing.assert_allclose(lap.toarray(), laplacian(expected.toarray(), normed=True), atol=1e-6)
    np.testing.assert_allclose(weights, np.sqrt(3 / (1 + expected.toarray().sum(1))), rtol=1e-6)
    # Re-run: cache hit, same file.
    code, out, _ = run_cli(monkeypatch, capsys, ["graph", neighbors, "--knn", "4", "--cache-dir", cache, "--json"])
    assert json.loads(out)["cached"] is True and json.loads(out)["path"] == str(path)


def test_cli_knn_graph_from_features_computes_neighbors(tmp_path, monkeypatch, capsys, features):
    code, out, err = run_cli(monkeypatch, capsys, ["graph", features, "--knn", "3", "--cache-dir", tmp_path / "c", "--json"])
    assert code == 0, err
    report = json.loads(out)
    assert report["builder"] == "knn" and report["n"] == 120 and report["isolated"] == 0
    assert 0.9 < report["edge_purity"] <= 1.0  # well-separated blobs
    assert list((tmp_path / "c" / "neighbors").glob("*.h5"))


def test_cli_self_expressive_graph(tmp_path, monkeypatch, capsys, features):
    args = ["graph", features, "--self-expressive", "--chunk-size", "50", "--se-topk", "5", "--cache-dir", tmp_path / "c"]
    code, out, err = run_cli(monkeypatch, capsys, args)
    assert code == 0, err
    with open_artifact(out.strip(), "graph") as art:
        graph = read_csr(art)
        assert art.attr("builder") == "self_expressive" and art.config["lam"] == 1.0
    dense = graph.toarray()
    np.testing.assert_allclose(dense, dense.T)
    assert (np.diag(dense) == 0).all() and graph.nnz >= 120 * 5


def test_cli_self_expressive_learned_l1(tmp_path, monkeypatch, capsys, features):
    args = ["graph", features, "--self-expressive", "--se-mode", "learned", "--c-norm", "l1", "--se-steps", "20",
            "--chunk-size", "60", "--cache-dir", tmp_path / "c", "--json"]
    code, out, err = run_cli(monkeypatch, capsys, args)
    assert code == 0, err
    assert json.loads(out)["config"]["norm"] == "l1"


# -- bad input ---------------------------------------------------------------------------------------
def test_neighbors_from_other_features_are_refused(tmp_path, monkeypatch, capsys, features):
    x, labels = blobs(n=120, d=8, seed=9)
    other = write_features(tmp_path / "other.h5", x, labels, tag="other")
    code, out, _ = run_cli(monkeypatch, capsys, ["neighbors", other, "-k", "5", "--cache-dir", tmp_path / "c", "-q"])
    neighbors = out.strip()
    cache = tmp_path / "c2"
    _assert_bad(
        *run_cli(monkeypatch, capsys, ["graph", neighbors, "--knn", "3", "--features", features, "--cache-dir", cache]),
        "features.h5",
        "recompute it",
    )
    _assert_bad(*run_cli(monkeypatch, capsys, ["graph", features, "--knn", "3", "--neighbors", neighbors, "--cache-dir", cache]), "not from")
    assert not cache.exists() or not list(cache.rglob("*.h5"))


def test_graph_bad_inputs(tmp_path, monkeypatch, capsys, features):
    cache = tmp_path / "c"
    code, out, _ = run_cli(monkeypatch, capsys, ["neighbors", features, "-k", "3", "--cache-dir", cache, "-q"])
    neighbors = out.strip()
    _assert_bad(*run_cli(monkeypatch, capsys, ["graph", neighbors, "--knn", "5", "--cache-dir", cache]), "--knn 5", "k=3")
    _assert_bad(*run_cli(monkeypatch, capsys, ["graph", features, "--knn", "120", "--cache-dir", cache]), "N=120")
    _assert_bad(*run_cli(monkeypatch, capsys, ["graph", neighbors, "--self-expressive", "--cache-dir", cache]), "is a neighbors artifact")
    _assert_bad(*run_cli(monkeypatch, capsys, ["graph", features, "--cache-dir", cache]), "exactly one of")
    _assert_bad(*run_cli(monkeypatch, capsys, ["graph", features, "--self-expressive", "--c-norm", "l1"]), "--se-mode learned")
    code, out, _ = run_cli(monkeypatch, capsys, ["graph", neighbors, "--knn", "2", "--cache-dir", cache, "-q"])
    _assert_bad(*run_cli(monkeypatch, capsys, ["graph", out.strip(), "--knn", "2"]), "is a graph artifact")
    x = blobs(n=30)[0]
    x[0, 0] = np.inf
    bad = write_features(tmp_path / "inf.h5", x, tag="inf")
    _assert_bad(*run_cli(monkeypatch, capsys, ["graph", bad, "--self-expressive", "--cache-dir", cache]), "1 of 30 rows")


@pytest.mark.slow
def test_self_expressive_70k_in_bounded_memory(tmp_path):
    """N = 70,000 (Fashion-MNIST size) on a CPU: peak RSS of the whole command stays well under 2 GB."""
    import subprocess
    import sys

    x = np.random.default_rng(0).standard_normal((70_000, 128)).astype(np.float32)
    features = write_features(tmp_path / "big.h5", x, tag="big")
    script = (
        "import resource, sys; from ccli.cli.main import run\n"
        "try:\n    run(sys.argv[1:])\nexcept SystemExit as e:\n    code = e.code\n"
        "print('RSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(code)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, "graph", str(features), "--self-expressive", "--cache-dir", str(tmp_path / "c"), "--json"],
        capture_output=True, text=True, timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr
    rss_kb = int(proc.stderr.split("RSS")[-1].split()[0])
    assert rss_kb < 2 * 1024 * 1024
    assert json.loads(proc.stdout)["n"] == 70_000
