"""The pruned exact kNN (cluster bounds, issue 17): exactly the plain search's ids and scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ccli.errors import BadInput
from ccli.neighbors import knn_pruned as P
from ccli.neighbors.knn import knn, prepare
from ccli.neighbors.knn_torch import dot_error_bound, filter_dtype
from ccli.neighbors.params import SearchParams

from test_neighbors import _assert_bad, run_cli, write_features


@pytest.fixture(autouse=True)
def small_lists(monkeypatch):
    """Lists of ~24 rows and query blocks of ~48, so a test-sized N has dozens of lists to prune."""
    monkeypatch.setattr(P, "ROWS_PER_LIST", 24)
    monkeypatch.setattr(P, "BLOCK_ROWS", 48)


def mixture(n, d=16, centres=20, spread=0.15, seed=0):
    rng = np.random.default_rng(seed)
    mu = rng.standard_normal((centres, d))
    return (mu[rng.integers(0, centres, n)] + spread * rng.standard_normal((n, d))).astype(np.float32)


def uniform(n, d=16, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, d)).astype(np.float32)


def brute(x, k, metric, exclude_self=True):
    """float64 reference from the rows the search sees: ranked by score, ties by lower id.

    Elementwise products summed per pair (not a BLAS product, whose blocking can give two copies of
    a row different last bits), so exact copies tie exactly and the lower id wins.
    """
    x = prepare(x, metric).astype(np.float64)
    if metric == "cosine":
        score = np.concatenate([(x[i : i + 64, None, :] * x[None, :, :]).sum(-1) for i in range(0, len(x), 64)])
    else:
        score = -((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    if exclude_self:
        np.fill_diagonal(score, -np.inf)
    order = np.lexsort((np.broadcast_to(np.arange(len(x)), score.shape), -score), axis=1)[:, :k]
    return order


def both(x, **kw):
    off = knn(x, SearchParams(backend="torch", prune="off", **kw))
    on = knn(x, SearchParams(backend="torch", prune="on", **kw))
    return off, on


def pruned_stats(x, k, metric="cosine", give_up=False):
    """search_pruned called as search_torch calls it, with its counters."""
    base = torch.from_numpy(prepare(x, metric))
    dtype = filter_dtype(base.device)
    low = base.to(dtype) if dtype != torch.float32 else base
    sq = (base * base).sum(1)
    stats = {}
    params = SearchParams(k=k, metric=metric, backend="torch", prune="on")
    with torch.inference_mode():
        found = P.search_pruned(base, low, sq, float(sq.sqrt().max()), dot_error_bound(dtype, x.shape[1]), params,
                                8192, give_up=give_up, stats=stats)
    return found, stats


@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("data", ["mixture", "uniform"])
def test_pruned_equals_plain_and_brute_force(metric, data):
    x = mixture(1500) if data == "mixture" else uniform(1500)
    (i_off, v_off), (i_on, v_on) = both(x, k=10, metric=metric)
    np.testing.assert_array_equal(i_on, i_off)
    np.testing.assert_array_equal(v_on, v_off)
    np.testing.assert_array_equal(i_on, brute(x, 10, metric))


def test_clustered_data_is_pruned_and_uniform_data_gives_up():
    """On 20 tight centres most lists are skipped; on uniform rows 'auto' hands back to the plain search."""
    _, stats = pruned_stats(mixture(1500), 10)
    assert stats["scored_fraction"] < 0.35, stats
    assert not stats["gave_up"]
    found, stats = pruned_stats(uniform(1500, d=32), 10, give_up=True)
    assert found is None and stats["gave_up"] and stats["scored_fraction"] > P._MAX_SCORED_FRACTION


def test_auto_matches_plain_above_and_below_min_n(monkeypatch):
    x = mixture(900, seed=3)
    plain = knn(x, SearchParams(k=5, backend="torch", prune="off"))
    auto_small = knn(x, SearchParams(k=5, backend="torch", prune="auto"))  # below MIN_N: the plain path
    monkeypatch.setattr(P, "MIN_N", 100)
    auto = knn(x, SearchParams(k=5, backend="torch", prune="auto"))
    for got in (auto_small, auto):
        np.testing.assert_array_equal(got[0], plain[0])
        np.testing.assert_array_equal(got[1], plain[1])


@pytest.mark.parametrize("k", [1, 2, 39, 299])
def test_k_edge_cases(k):
    """k = 1, small, above the lists' size, and k = N − 1 (every other row)."""
    x = mixture(300, d=8, centres=6, seed=1)
    (i_off, v_off), (i_on, v_on) = both(x, k=k)
    np.testing.assert_array_equal(i_on, i_off)
    np.testing.assert_array_equal(v_on, v_off)
    np.testing.assert_array_equal(i_on, brute(x, k, "cosine"))


def test_duplicates_ties_go_to_the_lower_id_and_self_is_kept_when_asked():
    base = mixture(200, d=8, centres=5, seed=2)
    x = np.concatenate([base, base[:60], base[:60]])  # every one of the first 60 rows three times
    for exclude_self in (True, False):
        (i_off, v_off), (i_on, v_on) = both(x, k=4, exclude_self=exclude_self)
        np.testing.assert_array_equal(i_on, i_off)
        np.testing.assert_array_equal(v_on, v_off)
        np.testing.assert_array_equal(i_on, brute(x, 4, "cosine", exclude_self))
    # self kept (the last pass): row 0 and its copies 200, 260 all score 1, listed in id order
    assert list(i_on[0][:3]) == [0, 200, 260]


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_near_ties_take_the_float64_path_and_stay_exact(metric):
    """Rows with copies perturbed by ~1e-6 (inside the fp32 product's 2ε) and exact copies: the proof
    fails on the (k+1)-th there, and on every witness where more than WITNESSES near-copies crowd the
    k-th; those rows are solved in float64 over the scored lists. Ids as float64 brute force, scores as plain."""
    rng = np.random.default_rng(6)
    base = mixture(400, d=16, centres=8, seed=6)
    near = [base[:150] + 1e-6 * rng.standard_normal((150, 16)).astype(np.float32) for _ in range(6)]
    x = np.concatenate([base, *near, base[:50]])
    found, stats = pruned_stats(x, 6, metric)
    assert stats["redone"] > 0 and stats["witness_rows"] > 0, stats
    np.testing.assert_array_equal(found[0], brute(x, 6, metric))
    (i_off, v_off), (i_on, v_on) = both(x, k=6, metric=metric)
    np.testing.assert_array_equal(i_on, i_off)
    np.testing.assert_array_equal(v_on, v_off)
    np.testing.assert_array_equal(i_on, found[0])


def test_group_top_equals_topk_values_with_ties():
    """`_top` (group maxima, then the best groups) returns torch.topk's values, ties and −inf included."""
    rng = np.random.default_rng(7)
    for w, kk in [(1000, 21), (517, 5), (64, 21), (4096, 2)]:
        tile = torch.from_numpy(rng.integers(0, 50, (37, w)).astype(np.float32))  # many exact ties
        tile[:, :3] = -np.inf
        v, pos = P._top(tile, kk)
        ref = torch.topk(tile, kk, dim=1).values
        np.testing.assert_array_equal(v.numpy(), ref.numpy())
        np.testing.assert_array_equal(torch.gather(tile, 1, pos).numpy(), v.numpy())
        assert all(len(set(row)) == kk for row in pos.tolist())  # distinct columns


def test_bad_prune_value_is_refused():
    with pytest.raises(BadInput, match=r"prune='maybe' is not one of auto, on, off"):
        knn(mixture(50), SearchParams(k=3, backend="torch", prune="maybe"))


@pytest.mark.parametrize("how", [["--prune", "maybe"], ["--set", "prune=maybe"]])
def test_bad_prune_exits_2_naming_the_key(tmp_path, monkeypatch, capsys, how):
    features = write_features(tmp_path / "f.h5", mixture(60))
    cache = tmp_path / "cache"
    _assert_bad(*run_cli(monkeypatch, capsys, ["neighbors", features, "-k", "3", "--cache-dir", cache, *how]),
                "prune='maybe'", "auto, on, off")
    assert not cache.exists() or not any(cache.rglob("*.h5"))


def test_prune_does_not_change_the_key(tmp_path, monkeypatch, capsys):
    features = write_features(tmp_path / "f.h5", mixture(120))
    keys = []
    for prune in ("off", "on"):
        code, out, _ = run_cli(monkeypatch, capsys, ["neighbors", features, "-k", "3", "--prune", prune, "--json", "-q",
                                                     "--cache-dir", tmp_path / prune])
        assert code == 0
        import json

        keys.append(json.loads(out)["key"])
    assert keys[0] == keys[1]


def test_knn_takes_the_pruned_path_for_the_whole_set_and_the_blocked_one_for_a_shard(monkeypatch):
    # knn() always passes a query range; the pruned search must still serve the whole set (an
    # integration once made every call look like a shard's, and the equality tests above still passed).
    pytest.importorskip("faiss")
    from ccli.neighbors import knn_torch

    calls = []
    real = P.search_pruned

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(P, "search_pruned", counting)
    x = mixture(600, seed=5)
    off = knn(x, SearchParams(k=5, backend="torch", prune="off"))
    assert calls == []
    on = knn(x, SearchParams(k=5, backend="torch", prune="on"))
    assert calls == [1]
    np.testing.assert_array_equal(on[0], off[0])
    np.testing.assert_array_equal(on[1], off[1])
    params = SearchParams(k=5, backend="torch", prune="on")
    shard = list(knn_torch.search_torch(prepare(x, "cosine"), params, (100, 300)))
    assert calls == [1] and shard[0][0] == 100 and sum(len(b[1]) for b in shard) == 200
