"""`ccli compare`: methods × seeds through their chains on one cache, then the report.

The chain test runs kmeans (which pretrains on its own through its `pretrain_preset`) beside the
platform's two-stage neighbour method (tests/pair_method.py, which needs neighbours: compare makes
pretrain → embed → neighbours for it) on a digits subset with tiny presets. Both use the same recipe,
so the cache must hold exactly one pretraining checkpoint and one features artifact, and every number
of the report must equal `ccli eval` on that run's predictions.h5.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import assert_bad_input

TINY_PRESETS = {
    "kmeans/tiny.yaml": "pretrain_preset: simclr-tiny  # test: the tiny recipe below\n"
                        "embed_layer: backbone  # test: as the digits preset\n"
                        "n_init: 2  # test: cheap\nseed: 42  # test: as the presets\n",
    "simclr/tiny.yaml": "method: simclr  # test\nbackbone: small_cnn  # test: the digits CNN\n"
                        "epochs: 1  # test: one pass\nbatch_size: 128  # test\noptimizer: adam  # test\n"
                        "lr: 1.0e-3  # test\nknn_every: 0  # test\nthreads: 1  # test\nflip_p: 0.0  # test\n",
}


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A presets root with the tiny recipes, a 400-image digits subset and the neighbour test method."""
    from sklearn.datasets import load_digits

    from ccli.methods import registry

    root = tmp_path / "presets"
    for name, text in TINY_PRESETS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    monkeypatch.setenv("CCLI_PRESETS", str(root))
    cache = tmp_path / "cache"
    monkeypatch.setenv("CCLI_CACHE", str(cache))
    digits = load_digits()
    data = tmp_path / "digits400.npz"
    np.savez(data, images=np.rint(digits.images[:400] * 255 / 16).astype(np.uint8)[..., None],
             labels=digits.target[:400], class_names=np.array([f"digit {i}" for i in range(10)]))
    registry.register(registry.MethodInfo(
        "pairtoy", "pair_method", "test: warm-up then neighbour pairs",
        consumes=("images", "checkpoint", "features", "neighbors", "graph"), requires=(("images",), ("neighbors", "graph")),
    ))
    yield {"data": f"npz:{data}", "cache": cache, "root": root}
    registry._METHODS.pop("pairtoy")


def test_compare_shares_the_pretraining_and_reports_eval_numbers(cli, tmp_path, tiny):
    out = tmp_path / "cmp"
    result = cli("compare", "--data", tiny["data"], "--methods", "kmeans,pairtoy", "--seeds", "2", "--preset", "tiny",
                 "-o", out, "--format", "html", "--format", "json", "--json")
    assert result.code == 0, result.err
    payload = json.loads(result.out)
    runs = payload["runs"]
    assert [(r["method"], r["seed"]) for r in runs] == [("kmeans", 42), ("kmeans", 43), ("pairtoy", 42), ("pairtoy", 43)]
    assert not any(r["cached"] for r in runs)
    # one pretraining and one embedding in the cache, shared by both methods and both seeds
    checkpoints = sorted(tiny["cache"].glob("runs/pretrain-*/checkpoint.pt"))
    assert len(checkpoints) == 1
    assert len(list(tiny["cache"].glob("features/*.h5"))) == 1
    shared = payload["shared"]
    assert shared[str(checkpoints[0])] == ["pairtoy/seed42", "pairtoy/seed43"]
    kmeans_features = {json.loads((out / "runs" / f"kmeans-npz-seed{s}" / "metrics.jsonl").read_text().splitlines()[-1])
                       ["features"] for s in (42, 43)}
    features = next(p for p in shared if p.endswith(".h5") and "features" in p)
    assert kmeans_features == {features}

    report = json.loads((out / "report.json").read_text())
    assert [t["dataset"] for t in report["tables"]] == [tiny["data"]]
    rows = {row["method"]: row for row in report["tables"][0]["rows"]}
    for method, row in rows.items():
        per_run = []
        for run in row["runs"]:
            evaluated = cli("eval", f"{run}/predictions.h5", "--json", "-q")
            assert evaluated.code == 0, evaluated.err
            per_run.append(json.loads(evaluated.out))
            listed = next(r for r in report["runs"] if r["path"] == run)
            for key in ("acc", "nmi", "ari", "precision", "recall", "f1"):
                assert listed["scores"][key] == per_run[-1][key]
        for key in ("acc", "nmi", "ari", "precision", "recall", "f1"):
            values = [e[key] for e in per_run]
            assert row["mean"][key] == pytest.approx(np.mean(values), abs=1e-12)
            assert row["std"][key] == pytest.approx(np.std(values, ddof=1), abs=1e-12)
        assert row["seeds"] == [42, 43] and row["device"] == "cpu"
    from ccli.report.collect import collect_run
    from ccli.report.figures import class_labels

    summary = collect_run(out / "runs" / "pairtoy-npz-seed42")
    assert class_labels(summary, summary.class_names) == [f"digit {i}" for i in range(10)]  # confusion rows
    html = (out / "report.html").read_text()
    assert html.count("<img src='data:image/png;base64,") >= 2 + 4 * 3  # scores + per-run figures
    assert "kmeans · npz:digits400.npz · seed 42" in html
    assert "http://" not in html and "https://" not in html

    # adding a method re-runs only the new one; the others are cache hits
    again = cli("compare", "--data", tiny["data"], "--methods", "kmeans", "--seeds", "2", "--preset", "tiny",
                "-o", out, "--format", "json", "--json")
    assert again.code == 0, again.err
    assert all(r["cached"] for r in json.loads(again.out)["runs"])
    assert len(list(tiny["cache"].glob("runs/pretrain-*/checkpoint.pt"))) == 1


def test_compare_bad_input_writes_nothing(cli, tmp_path, tiny):
    out = tmp_path / "cmp"
    assert_bad_input(cli("compare", "--data", tiny["data"], "--methods", "kmeans,nosuch", "-o", out),
                     "nosuch", "kmeans", "cc", "dcacn")
    assert_bad_input(cli("compare", "--data", tiny["data"], "--methods", "kmeans", "--seeds", "0", "-o", out),
                     "--seeds 0")
    assert_bad_input(cli("compare", "--data", tiny["data"], "--methods", "kmeans", "--preset", "tinny", "-o", out),
                     "tinny", "tiny")
    assert_bad_input(cli("compare", "--data", tiny["data"], "--methods", "", "-o", out), "--methods")
    assert_bad_input(cli("compare", "--data", tiny["data"], "--methods", "kmeans", "--format", "pdf", "-o", out),
                     "--format pdf")
    assert not out.exists()
    assert not tiny["cache"].exists() or not any(tiny["cache"].rglob("*.h5"))


@pytest.mark.parametrize("consumes, requires, expected", [
    (("images", "checkpoint"), (("images",),), ()),  # cc, dcacn: from images
    (("features", "images", "checkpoint"), (("features", "images"),), ()),  # kmeans: pretrains on its own
    (("features",), (("features",),), ("features",)),
    (("images", "checkpoint", "features", "neighbors"), (("images",), ("neighbors",)),
     ("checkpoint", "features", "neighbors")),  # SCAN-like: warm start + the neighbours of its features
    (("images", "graph"), (("images",), ("graph", "neighbors")), ("graph",)),
    (("images", "checkpoint"), (("images",), ("checkpoint",)), ("checkpoint",)),
])
def test_the_chain_a_method_is_given(consumes, requires, expected):
    from ccli.compare import _needs
    from ccli.methods.registry import MethodInfo

    assert _needs(MethodInfo("m", "x", "", consumes=consumes, requires=requires)) == expected
