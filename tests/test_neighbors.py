"""ccli neighbors: backends against brute force, self exclusion, blocking, purity, the multi-view
cascade, artifacts, the cache, and every bad input (issue 4)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ccli.neighbors.knn import knn
from ccli.neighbors.knn_faiss import drop_self
from ccli.neighbors.params import SearchParams
from ccli.neighbors.multiview import _align, filter_scores, keep_best, rerank, strong_rerank
from ccli.neighbors.purity import neighbor_purity, purity_at
from ccli.store import ArtifactWriter, content_key, open_artifact



@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Any run without --cache-dir writes into the test's folder, never the user's cache."""
    monkeypatch.setenv("CCLI_CACHE", str(tmp_path / "default-cache"))

# -- helpers -------------------------------------------------------------------------------
def write_features(path: Path, x: np.ndarray, labels=None, views: dict | None = None, tag: str = "t") -> Path:
    """A features artifact as `ccli embed` writes it (features, labels, index, views/<name>)."""
    n = len(x)
    labels = np.full(n, -1, dtype=np.int64) if labels is None else np.asarray(labels, dtype=np.int64)
    config = {"test": tag}
    with ArtifactWriter(path, "features", content_key("features", config, [tag]), config, []) as w:
        w.write("features", x.astype(np.float32))
        w.write("labels", labels)
        w.write("index", np.arange(n, dtype=np.int64))
        for name, value in (views or {}).items():
            w.write(f"views/{name}", value.astype(np.float32))
    return path


def blobs(n=240, d=12, classes=4, spread=0.6, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, d)) * 3
    labels = rng.integers(0, classes, n)
    return (centres[labels] + spread * rng.standard_normal((n, d))).astype(np.float32), labels


def run_cli(monkeypatch, capsys, args):
    """Run `ccli ARGS` in-process with only this issue's commands registered; (code, out, err)."""
    import ccli.cli.main as main

    monkeypatch.setattr(main, "COMMAND_MODULES", ("ccli.cli.neighbors_cmd", "ccli.cli.graph_cmd"))
    with pytest.raises(SystemExit) as exc:
        main.run([str(a) for a in args])
    captured = capsys.readouterr()
    return exc.value.code, captured.out, captured.err


def brute_force(x: np.ndarray, k: int, metric: str):
    """Reference answer in float64 numpy: (indices, scores) with self excluded."""
    x = x.astype(np.float64)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        sim = x @ x.T
        np.fill_diagonal(sim, -np.inf)
        order = np.argsort(-sim, axis=1, kind="stable")[:, :k]
        return order, np.take_along_axis(sim, order, axis=1)
    dist = np.sqrt(np.maximum(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1), 0))
    np.fill_diagonal(dist, np.inf)
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(dist, order, axis=1)


# -- backends against brute force -----------------------------------------------------------
@pytest.mark.parametrize("backend", ["torch", "faiss"])
@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_exact_backends_match_brute_force(backend, metric):
    x = np.random.default_rng(1).standard_normal((300, 16)).astype(np.float32)
    idx, scores = knn(x, SearchParams(k=7, metric=metric, backend=backend))
    ref_idx, ref_scores = brute_force(x, 7, metric)
    # Random continuous data has no ties, so the ranked lists agree exactly.
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-4, atol=1e-4)


def test_sklearn_agrees_on_l2():
    from sklearn.neighbors import NearestNeighbors

    x = np.random.default_rng(2).standard_normal((200, 8)).astype(np.float32)
    dist, ind = NearestNeighbors(n_neighbors=6).fit(x).kneighbors(x)
    idx, scores = knn(x, SearchParams(k=5, metric="l2", backend="torch"))
    np.testing.assert_array_equal(idx, ind[:, 1:])  # sklearn lists the query itself first
    np.testing.assert_allclose(scores, dist[:, 1:], rtol=1e-4, atol=1e-4)


def test_ivf_with_every_list_probed_is_exact():
    x, _ = blobs(n=400, d=8)
    exact, _ = knn(x, SearchParams(k=5, backend="torch"))
    approx, _ = knn(x, SearchParams(k=5, backend="faiss", index="ivf", nlist=8, nprobe=8))
    np.testing.assert_array_equal(np.sort(approx, 1), np.sort(exact, 1))


def test_hnsw_recall_is_high():
    x, _ = blobs(n=400, d=8)
    exact, _ = knn(x, SearchParams(k=5, backend="torch"))
    approx, _ = knn(x, SearchParams(k=5, backend="faiss", index="hnsw", ef_search=200))
    recall = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(approx, exact)])
    assert recall > 0.98


@pytest.mark.parametrize("backend", ["torch", "faiss"])
def test_self_is_excluded_by_id_even_with_duplicates(backend):
    base = np.random.default_rng(3).standard_normal((50, 6)).astype(np.float32)
    x = np.concatenate([base, base])  # point i and i+50 are identical
    idx, scores = knn(x, SearchParams(k=3, backend=backend))
    rows = np.arange(100)
    assert not (idx == rows[:, None]).any()
    # The twin is a genuine neighbour at similarity 1, ranked first.
    np.testing.assert_array_equal(idx[:, 0], (rows + 50) % 100)
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)


def test_include_self_lists_self_first():
    x = np.random.default_rng(4).standard_normal((60, 5)).astype(np.float32)
    idx, scores = knn(x, SearchParams(k=4, backend="torch", exclude_self=False))
    np.testing.assert_array_equal(idx[:, 0], np.arange(60))
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_blocked_search_equals_unblocked(metric):
    x = np.random.default_rng(5).standard_normal((157, 9)).astype(np.float32)
    whole = knn(x, SearchParams(k=6, metric=metric, backend="torch", block_rows=157))
    blocked = knn(x, SearchParams(k=6, metric=metric, backend="torch", block_rows=7))
    faiss_blocked = knn(x, SearchParams(k=6, metric=metric, backend="faiss", block_rows=10))
    np.testing.assert_array_equal(whole[0], blocked[0])
    np.testing.assert_array_equal(whole[0], faiss_blocked[0])
    np.testing.assert_allclose(whole[1], blocked[1], rtol=1e-6)


def test_drop_self_removes_own_id_or_last():
    ids = np.array([[0, 4, 5], [7, 9, 1]])
    scores = np.array([[1.0, 0.9, 0.8], [0.95, 0.9, 0.85]])
    out_ids, out_scores = drop_self(ids, scores, np.array([0, 1]), 2)
    np.testing.assert_array_equal(out_ids, [[4, 5], [7, 9]])
    np.testing.assert_array_equal(out_scores, [[0.9, 0.8], [0.95, 0.9]])


# -- purity ----------------------------------------------------------------------------------
def test_purity_matches_hand_computation():
    labels = np.array([0, 0, 1, 1, -1])
    indices = np.array([[1, 2], [0, 4], [3, 0], [2, 1], [0, 1]])
    # Known pairs: (0,1)=same (0,2)=diff | (1,0)=same, (1,4) unknown | (2,3)=same (2,0)=diff
    # | (3,2)=same (3,1)=diff | anchor 4 unknown → 4 same out of 7 known pairs.
    assert neighbor_purity(indices, labels) == pytest.approx(4 / 7)
    # First column only: (0,1) (1,0) (2,3) (3,2) are all same.
    assert purity_at(indices, labels) == {1: 1.0, 2: pytest.approx(4 / 7)}
    assert neighbor_purity(indices, np.full(5, -1)) is None


# -- multi-view building blocks -----------------------------------------------------------------
def test_rerank_orders_candidates_by_the_other_view():
    table = np.array([[1, 0], [0, 1], [0.6, 0.8], [0.8, 0.6]], dtype=np.float32)
    candidates = np.array([[1, 2, 3]])
    idx, sim = rerank(candidates, table[:1], table, keep=2)
    np.testing.assert_array_equal(idx, [[3, 2]])
    np.testing.assert_allclose(sim, [[0.8, 0.6]])


def test_keep_best_breaks_ties_by_previous_rank():
    idx, scores = keep_best(np.array([[5, 6, 7, 8]]), np.array([[0.5, 0.9, 0.5, 0.9]]), 3)
    np.testing.assert_array_equal(idx, [[6, 8, 5]])


def test_filter_scores_by_hand():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]], dtype=np.float32)
    candidates = np.array([[1, 2], [0, 2], [0, 1]])
    dot = filter_scores(candidates, probs, "dot")
    np.testing.assert_allclose(dot[0], [0.9 * 0.8 + 0.1 * 0.2, 0.9 * 0.3 + 0.1 * 0.7])
    anchor_class = filter_scores(candidates, probs, "anchor_class")
    np.testing.assert_allclose(anchor_class[2], [0.1, 0.2])  # anchor 2's class is 1
    confidence = filter_scores(candidates, probs, "confidence")
    np.testing.assert_allclose(confidence[0], [0.8, 0.7])


def test_scan_loss_by_hand():
    import math

    import torch

    from ccli.losses.scan import batch_entropy, scan_consistency, scan_loss as scan_objective

    # Confident, agreeing, balanced predictions: consistency ≈ 0, entropy of the mean = log 2.
    logits = torch.tensor([[20.0, 0.0], [0.0, 20.0]])
    assert scan_objective(logits, logits, 5.0).item() == pytest.approx(-5 * math.log(2), abs=1e-6)
    # Uniform predictions: ⟨p, p⟩ = 1/2 → −log(1/2); entropy log 2.
    flat = torch.zeros(3, 2)
    assert scan_objective(flat, flat, 1.0).item() == pytest.approx(math.log(2) - math.log(2), abs=1e-6)
    # Terms on their own: ⟨(.8,.2),(.5,.5)⟩ = .5 and ⟨(.1,.9),(.3,.7)⟩ = .66; mean p̄ = (.45, .55).
    pa = torch.tensor([[0.8, 0.2], [0.1, 0.9]])
    pn = torch.tensor([[0.5, 0.5], [0.3, 0.7]])
    assert scan_consistency(pa, pn).item() == pytest.approx(-(math.log(0.5) + math.log(0.66)) / 2, rel=1e-6)
    assert batch_entropy(pa).item() == pytest.approx(-(0.45 * math.log(0.45) + 0.55 * math.log(0.55)), rel=1e-6)


def test_strong_rerank_averages_draws():
    rng = np.random.default_rng(6)
    tables = [rng.standard_normal((30, 4)).astype(np.float32) for _ in range(2)]
    candidates = np.argsort(rng.random((30, 29)), axis=1)[:, :10]
    candidates = np.where(candidates == np.arange(30)[:, None], 29, candidates)
    idx, sim = strong_rerank(candidates, tables[0], tables, keep=4, metric="cosine", mode="both")
    mean = np.stack([np.einsum("bd,bmd->bm", t, t[candidates]) for t in tables]).mean(0)
    ref_idx, ref_sim = keep_best(candidates, mean.astype(np.float32), 4)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(sim, ref_sim, rtol=1e-5)


def test_align_undoes_a_permutation():
    reference = np.array([[4, 7, 1]])
    permuted = np.array([[1, 4, 7]])
    np.testing.assert_array_equal(_align(reference, permuted, np.array([[10.0, 20.0, 30.0]])), [[20.0, 30.0, 10.0]])


def test_cascade_raises_purity_when_views_carry_independent_signal():
    """Each view = class centre + its own noise: agreement across views is evidence the clean
    view alone lacks, so every cascade step must be purer than the last (mechanism check)."""
    from ccli.neighbors.knn import prepare
    from ccli.neighbors.multiview import CascadeParams, cascade

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 600)
    centres = rng.standard_normal((4, 16))
    clean, strong, weak = (prepare(centres[labels] + 1.6 * rng.standard_normal((600, 16)), "cosine") for _ in range(3))
    candidates, scores = knn(clean, SearchParams(k=20, backend="torch"))
    steps = cascade(candidates, scores, clean, [strong], weak, CascadeParams(q=5, clusters=4, filter_head="kmeans"))
    plain = neighbor_purity(candidates[:, :5], labels)
    purities = [neighbor_purity(step.indices, labels) for step in steps]
    assert purities[0] < purities[1] < purities[2]
    assert purities[2] > plain + 0.1  # measured 0.71 → 0.91


def test_cascade_without_view_signal_keeps_the_purity_of_its_candidate_pool():
    """The digits finding in miniature (BENCHMARKS.md, issue 10, second look): when the strong and
    weak views carry no class signal, steps 2-3 pick a random subset of the 4q clean pool, so the
    final purity is the pool's (below plain top-q kNN), and a purer pool (cleaner features, as the
    projector's on digits) is the only thing that lifts it."""
    from ccli.neighbors.knn import prepare
    from ccli.neighbors.multiview import CascadeParams, cascade

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, 400)  # ~40 per class: the 4q = 20 pool is half a class, as 80 of ~180 digits
    centres = rng.standard_normal((10, 16))
    finals, pools, plains = [], [], []
    for noise in (1.0, 0.6):  # noisier ("backbone") and cleaner ("projector") clean features
        clean = prepare(centres[labels] + noise * rng.standard_normal((400, 16)), "cosine")
        strong, weak = (prepare(rng.standard_normal((400, 16)), "cosine") for _ in range(2))  # no signal
        candidates, scores = knn(clean, SearchParams(k=20, backend="torch"))
        steps = cascade(candidates, scores, clean, [strong], weak, CascadeParams(q=5, clusters=10, filter_head="kmeans"))
        pool, mid, final = (neighbor_purity(step.indices, labels) for step in steps)
        assert abs(mid - pool) < 0.03 and abs(final - pool) < 0.03  # random halving keeps the pool's purity
        plains.append(neighbor_purity(candidates[:, :5], labels))
        assert final < plains[-1]  # so the cascade lands below plain top-q
        finals.append(final)
        pools.append(pool)
    # measured: pool 0.684 → final 0.687 (plain 0.776); pool 0.968 → final 0.969 (plain 0.984)
    assert plains[0] - finals[0] > 0.05
    assert pools[1] > pools[0] + 0.2 and finals[1] > finals[0] + 0.2


# -- the command --------------------------------------------------------------------------------
@pytest.fixture
def digits_like(tmp_path):
    x, labels = blobs(n=240, d=12)
    rng = np.random.default_rng(7)
    views = {"weak": x + 0.1 * rng.standard_normal(x.shape), "strong": x + 0.3 * rng.standard_normal(x.shape)}
    return write_features(tmp_path / "features.h5", x, labels, views), x, labels


def test_cli_writes_artifact_reports_purity_and_hits_cache(tmp_path, monkeypatch, capsys, digits_like):
    features, x, labels = digits_like
    cache = tmp_path / "cache"
    code, out, err = run_cli(monkeypatch, capsys, ["neighbors", features, "-k", "5", "--cache-dir", cache])
    assert code == 0, err
    path = Path(out.strip())
    assert out.count("\n") == 1 and path.parent == cache / "neighbors"
    with open_artifact(path, "neighbors") as art, open_artifact(features, "features") as ft:
        indices, scores = art.read("indices"), art.read("scores")
        assert art.inputs == [ft.key] and art.attr("k") == 5 and art.attr("metric") == "cosine"
        np.testing.assert_array_equal(art.read("labels"), labels)
    ref_idx, ref_scores = brute_force(x, 5, "cosine")
    np.testing.assert_array_equal(indices, ref_idx)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-4)
    assert "purity" in err
    inode = path.stat().st_ino  # a rewrite would rename a new file into place

    code, out, err = run_cli(monkeypatch, capsys, ["neighbors", features, "-k", "5", "--cache-dir", cache, "--json"])
    report = json.loads(out)
    assert code == 0 and report["cached"] is True and report["path"] == str(path)
    assert path.stat().st_ino == inode
    assert report["purity"]["5"] == pytest.approx(neighbor_purity(ref_idx, labels))


def test_exact_backends_share_a_key(tmp_path, monkeypatch, capsys, digits_like):
    features, _, _ = digits_like
    cache = tmp_path / "cache"
    _, out, _ = run_cli(monkeypatch, capsys, ["neighbors", features, "-k", "5", "--backend", "torch", "--cache-dir", cache, "--json"])
    first = json.loads(out)
    _, out, _ = run_cli(monkeypatch, capsys, ["neighbors", features, "-k", "5", "--backend", "faiss", "--cache-dir", cache, "--json"])
    second = json.loads(out)
    assert first["backend"] == "torch" and second["cached"] is True and second["path"] == first["path"]
    _, out, _ = run_cli(monkeypatch, capsys, ["neighbors", features, "-k", "5", "--index", "ivf", "--nlist", "4", "--cache-dir", cache, "--json"])
    ivf = json.loads(out)
    assert ivf["backend"] == "faiss" and ivf["cached"] is False and ivf["config"]["nprobe"] == 16


def test_cli_out_option_and_l2(tmp_path, monkeypatch, capsys, digits_like):
    features, x, _ = digits_like
    out_path = tmp_path / "nb.h5"
    code, out, _ = run_cli(monkeypatch, capsys, ["neighbors", features, "-k", "4", "--metric", "l2", "-o", out_path, "--backend", "faiss", "-q"])
    assert code == 0 and out.strip() == str(out_path)
    with open_artifact(out_path, "neighbors") as art:
        ref_idx, ref_scores = brute_force(x, 4, "l2")
        np.testing.assert_array_equal(art.read("indices"), ref_idx)
        np.testing.assert_allclose(art.read("scores"), ref_scores, rtol=1e-4)


def test_cli_multi_view_keeps_every_step(tmp_path, monkeypatch, capsys, digits_like):
    features, _, labels = digits_like
    args = ["neighbors", features, "-k", "5", "--multi-view", "--filter-head", "kmeans", "--cache-dir", tmp_path / "c", "--json"]
    code, out, err = run_cli(monkeypatch, capsys, args)
    assert code == 0, err
    report = json.loads(out)
    with open_artifact(report["path"], "neighbors") as art:
        clean, strong, weak = (art.read(f"steps/{s}/indices") for s in ("clean", "strong", "weak"))
        final = art.read("indices")
        assert clean.shape == (240, 20) and strong.shape == (240, 10) and weak.shape == (240, 5)
        assert json.loads(art.attr("steps")) == ["clean", "strong", "weak"]
        assert json.loads(art.h5["steps/strong"].attrs["views"]) == ["views/strong"]
    np.testing.assert_array_equal(final, weak)
    # A cascade only re-ranks: each step's set lies inside the previous one, self never appears.
    for row in range(240):
        assert set(weak[row]) <= set(strong[row]) <= set(clean[row])
    assert not (final == np.arange(240)[:, None]).any()
    steps = {row["step"]: row for row in report["steps"]}
    assert set(steps) == {"knn", "clean", "strong", "weak"}
    assert steps["weak"]["purity"] == pytest.approx(neighbor_purity(final, labels))
    assert steps["knn"]["purity"] == pytest.approx(neighbor_purity(clean[:, :5], labels))


def test_cli_multi_view_scan_warmup_head(tmp_path, monkeypatch, capsys, digits_like):
    features, _, _ = digits_like
    args = ["neighbors", features, "-k", "5", "--multi-view", "--cache-dir", tmp_path / "c", "-q",
            "--set", "head_epochs=3", "--set", "head_hidden=32"]
    code, out, err = run_cli(monkeypatch, capsys, args)
    assert code == 0, err
    with open_artifact(out.strip(), "neighbors") as art:
        assert art.read("indices").shape == (240, 5)
        assert art.attr("score_kind") == "filter_dot" and art.config["filter_head"] == "scan_warmup"


# -- bad input: exit 2, one sentence, nothing written --------------------------------------------
def _assert_bad(code, out, err, *needles):
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ccli: error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_k_not_smaller_than_n(tmp_path, monkeypatch, capsys, digits_like):
    features, _, _ = digits_like
    cache = tmp_path / "cache"
    _assert_bad(*run_cli(monkeypatch, capsys, ["neighbors", features, "-k", "240", "--cache-dir", cache]), "-k 240", "N=240")
    assert not cache.exists() or not list(cache.rglob("*.h5"))


def test_multi_view_candidates_must_fit(tmp_path, monkeypatch, capsys, digits_like):
    features, _, _ = digits_like
    _assert_bad(*run_cli(monkeypatch, capsys, ["neighbors", features, "-k", "60", "--multi-view", "--cache-dir", tmp_path]), "240")


def test_nan_rows_are_counted(tmp_path, monkeypatch, capsys):
    x, _ = blobs(n=50)
    x[3, 1] = np.nan
    x[7] = np.inf
    features = write_features(tmp_path / "bad.h5", x)
    cache = tmp_path / "cache"
    _assert_bad(*run_cli(monkeypatch, capsys, ["neighbors", features, "-k", "3", "--cache-dir", cache]), "bad.h5", "2 of 50 rows")
    assert not list(cache.rglob("*.h5"))


def test_multi_view_without_views_names_them(tmp_path, monkeypatch, capsys):
    x, labels = blobs(n=50)
    features = write_features(tmp_path / "plain.h5", x, labels, views={"weak": x})
    _assert_bad(
        *run_cli(monkeypatch, capsys, ["neighbors", features, "-k", "3", "--multi-view", "--cache-dir", tmp_path / "c"]),
        "'views/strong'",
        "ccli embed --views strong,weak",
    )


def test_multi_view_excludes_self(tmp_path, monkeypatch, capsys, digits_like):
    features, _, _ = digits_like
    _assert_bad(*run_cli(monkeypatch, capsys, ["neighbors", features, "--multi-view", "--include-self"]), "--include-self")


def test_multi_view_strong_draws_must_exist(tmp_path, monkeypatch, capsys, digits_like):
    features, _, _ = digits_like
    _assert_bad(*run_cli(monkeypatch, capsys, ["neighbors", features, "-k", "5", "--multi-view", "--strong-draws", "3"]),
                "1 draw(s) of the 'strong' view", "ccli embed --views")


def test_multi_view_averages_numbered_draws(tmp_path, monkeypatch, capsys):
    x, labels = blobs(n=120, d=8)
    rng = np.random.default_rng(8)
    views = {f"strong_{d}": x + 0.2 * rng.standard_normal(x.shape) for d in range(2)}
    views["weak"] = x
    features = write_features(tmp_path / "draws.h5", x, labels, views)
    args = ["neighbors", features, "-k", "4", "--multi-view", "--strong-draws", "2", "--filter-head", "kmeans", "--json", "-q"]
    code, out, err = run_cli(monkeypatch, capsys, args)
    assert code == 0, err
    with open_artifact(json.loads(out)["path"], "neighbors") as art:
        assert json.loads(art.h5["steps/strong"].attrs["views"]) == ["views/strong_0", "views/strong_1"]


def test_multi_view_without_labels_needs_clusters(tmp_path, monkeypatch, capsys):
    x, _ = blobs(n=50)
    features = write_features(tmp_path / "nolabels.h5", x, None, views={"weak": x, "strong": x})
    _assert_bad(*run_cli(monkeypatch, capsys, ["neighbors", features, "-k", "3", "--multi-view", "--cache-dir", tmp_path]), "--clusters")


def test_wrong_artifact_kind(tmp_path, monkeypatch, capsys, digits_like):
    features, _, _ = digits_like
    code, out, _ = run_cli(monkeypatch, capsys, ["neighbors", features, "-k", "3", "--cache-dir", tmp_path / "c"])
    neighbors = out.strip()
    _assert_bad(*run_cli(monkeypatch, capsys, ["neighbors", neighbors, "-k", "3"]), "is a neighbors artifact", "features artifact is needed")


def test_unknown_option_values(tmp_path, monkeypatch, capsys, digits_like):
    features, _, _ = digits_like
    _assert_bad(*run_cli(monkeypatch, capsys, ["neighbors", features, "--metric", "manhattan"]), "metric", "cosine, l2")
    _assert_bad(*run_cli(monkeypatch, capsys, ["neighbors", features, "--backend", "torch", "--index", "ivf"]), "--index ivf")
    _assert_bad(*run_cli(monkeypatch, capsys, ["neighbors", features, "-k", "0"]), "-k 0")
    _assert_bad(*run_cli(monkeypatch, capsys, ["neighbors", tmp_path / "missing.h5"]), "does not exist")


def test_cli_warns_when_the_cascade_lowers_purity(capsys):
    from ccli.cli.neighbors_cmd import _warn_if_cascade_lowered_purity

    rows = [{"step": "knn", "k": 20, "purity": 0.96}, {"step": "clean", "k": 80, "purity": 0.91},
            {"step": "weak", "k": 20, "purity": 0.93}]
    _warn_if_cascade_lowered_purity(rows)
    err = capsys.readouterr().err
    assert "lowered neighbour purity at k=20 (0.9300 vs 0.9600" in " ".join(err.split())
    rows[-1]["purity"] = 0.97
    _warn_if_cascade_lowered_purity(rows)
    assert capsys.readouterr().err == ""
