"""`ccli report` over run folders: table values recomputed from predictions, plots written."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from ccli.metrics import clustering_scores
from ccli.store import ArtifactWriter, content_key
from tests.conftest import assert_bad_input


def make_run(folder, method, labels, targets, losses, data="digits", seed=42, config=None, probs=None, scores=True):
    """A run folder as `ccli train` writes it (inputs.images, config.seed, per-epoch scores)."""
    folder.mkdir(parents=True)
    record = {"method": method, "inputs": {"images": data, "split": "all"}, "num_clusters": 3,
              "config": {"seed": seed, "engine": {"device": "cpu"}, **(config or {})}}
    with ArtifactWriter(folder / "predictions.h5", "predictions", content_key("predictions", record), record,
                        attrs={"method": method, "num_clusters": 3}) as w:
        w.write("labels", labels)
        w.write("index", np.arange(len(labels)))
        w.write("targets", targets)
        if probs is not None:
            w.write("probs", probs)
    lines = [{"epoch": i + 1, "loss": loss, "epoch_time_s": 2.0, "knn_acc": 0.5 + 0.1 * i,
              **({"acc": 0.3 + 0.1 * i, "nmi": 0.2 + 0.1 * i, "ari": 0.1 * i} if scores else {})}
             for i, loss in enumerate(losses)]
    lines.append({"final": True, "acc": 0.123})  # a stale figure the report must not trust
    (folder / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return folder


def _noisy(rng, targets, p):
    return np.where(rng.random(len(targets)) < p, (targets + 1) % 3, rng.integers(0, 3, len(targets)))


@pytest.fixture
def two_runs(tmp_path):
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 3, 90)
    good = _noisy(rng, targets, 0.9)
    bad = rng.integers(0, 3, 90)
    data = tmp_path / "tiny.npz"
    np.savez(data, images=rng.integers(0, 256, (90, 8, 8, 1), dtype=np.uint8), labels=targets)
    a = make_run(tmp_path / "cc-run", "cc", good, targets, [3.0, 2.5, 2.2], data=f"npz:{data}")
    b = make_run(tmp_path / "dcacn-run", "dcacn", bad, targets, [4.0, 3.9], data=f"npz:{data}")
    return a, b, targets, good, bad


def test_report_json_scores_recomputed(cli, two_runs, tmp_path):
    a, b, targets, good, bad = two_runs
    result = cli("report", a, b / "predictions.h5", "-o", tmp_path / "rep", "--json", "--format", "json")
    assert result.code == 0, result.err
    rows = json.loads(result.out)
    assert [r["method"] for r in rows] == ["cc", "dcacn"]
    expected = clustering_scores(targets, good)
    assert rows[0]["scores"]["acc"] == expected["acc"] != 0.123
    assert rows[0]["scores"]["nmi"] == expected["nmi"]
    assert rows[1]["scores"]["ari"] == clustering_scores(targets, bad)["ari"]
    assert rows[0]["epochs"] == 3 and rows[0]["train_seconds"] == 6.0
    # the data column is the spec the runs were trained on (inputs.images), not '?'
    assert rows[0]["data"] == f"npz:{tmp_path / 'tiny.npz'}" and rows[0]["seed"] == 42
    assert re.fullmatch(r"cc · npz:tiny.npz · seed 42 · \d{4}-\d\d-\d\d \d\d:\d\d", rows[0]["name"])


def test_mean_std_over_seeds_and_datasets_never_mixed(cli, tmp_path):
    rng = np.random.default_rng(1)
    targets = rng.integers(0, 3, 120)
    preds = {s: _noisy(rng, targets, 0.5 + 0.1 * s) for s in range(3)}
    runs = [make_run(tmp_path / f"cc-s{s}", "cc", preds[s], targets, [1.0], seed=s) for s in range(3)]
    runs.append(make_run(tmp_path / "cc-fm", "cc", preds[0], targets, [1.0], data="fashion-mnist:/x"))
    runs.append(make_run(tmp_path / "cc-other", "cc", preds[1], targets, [1.0], config={"epochs": 9}))
    result = cli("report", tmp_path, "-o", tmp_path / "rep", "--format", "json")
    assert result.code == 0, result.err
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    tables = {t["dataset"]: t["rows"] for t in report["tables"]}
    assert set(tables) == {"digits", "fashion-mnist:/x"}
    digits = tables["digits"]
    assert [r["label"] for r in digits] == ["cc (variant 1)", "cc (variant 2)"]  # another config is another row
    row = next(r for r in digits if len(r["runs"]) == 3)
    acc = [clustering_scores(targets, preds[s])["acc"] for s in range(3)]
    assert row["mean"]["acc"] == pytest.approx(np.mean(acc)) and row["std"]["acc"] == pytest.approx(np.std(acc, ddof=1))
    assert row["seeds"] == [0, 1, 2] and row["epochs"] == 1 and row["train_seconds"] == 2.0
    assert len(tables["fashion-mnist:/x"][0]["runs"]) == 1


def test_paper_numbers_beside_ours_where_the_dataset_matches(cli, tmp_path):
    from ccli.report.paper import paper_results_for

    targets = np.arange(90) % 3
    make_run(tmp_path / "r" / "cc-c10", "cc", targets, targets, [1.0], data="cifar10:/data/c10")
    make_run(tmp_path / "r" / "cc-digits", "cc", targets, targets, [1.0])
    paper = paper_results_for("cc", "cifar10")
    assert paper and paper[0]["acc"] == 0.790 and "Table 2" in paper[0]["table"]
    assert paper_results_for("cc", "digits") == []
    result = cli("report", tmp_path / "r", "-o", tmp_path / "rep", "--format", "md")
    assert result.code == 0, result.err
    md = (tmp_path / "rep" / "report.md").read_text()
    c10 = md.split("## cifar10:/data/c10")[1].split("## ")[0]
    assert f"cc: paper ({paper[0]['table']}) | — | 0.7900 | 0.7050 | 0.6370 |" in c10
    assert "cc: paper" not in md.split("## digits")[1].split("## ")[0]


def test_report_files_and_stdout_path(cli, two_runs, tmp_path):
    a, b, targets, good, _ = two_runs
    result = cli("report", a, b, "-o", tmp_path / "rep", "--title", "digits comparison")
    assert result.code == 0, result.err
    md_path = tmp_path / "rep" / "report.md"
    assert result.out.strip() == str(md_path)
    md = md_path.read_text()
    assert "# digits comparison" in md
    assert f"{clustering_scores(targets, good)['acc']:.4f}" in md
    pngs = sorted(p.name for p in (tmp_path / "rep").glob("*.png"))
    for kind in ("training", "confusion", "thumbnails"):
        assert [p for p in pngs if p.startswith(kind)] == [f"{kind}_01_cc_seed42.png", f"{kind}_02_dcacn_seed42.png"]
    assert any(p.startswith("scores_") for p in pngs)
    for png in pngs:
        data = (tmp_path / "rep" / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
        assert f"({png})" in md
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "<table>" in html and "cc · npz:tiny.npz · seed 42" in html


def test_html_is_one_self_contained_file(cli, two_runs, tmp_path):
    a, b, *_ = two_runs
    out = tmp_path / "rep"
    result = cli("report", a, b, "-o", out, "--format", "html")
    assert result.code == 0, result.err
    assert sorted(p.name for p in out.iterdir()) == ["report.html"]  # nothing beside it
    html = (out / "report.html").read_text()
    sources = re.findall(r"src='([^']*)'", html)
    assert len(sources) == 1 + 2 * 3  # scores, and per run training, confusion, thumbnails (no features: no map)
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(r"(href|src)=['\"]?(https?:|//|file:)", html) and "<script" not in html and "<link" not in html


def test_map_uses_features_or_soft_assignments(tmp_path):
    from ccli.report.collect import collect_run
    from ccli.report.figures import embed_2d, plot_map

    rng = np.random.default_rng(2)
    targets = np.arange(60) % 3
    probs = rng.dirichlet(np.ones(3), 60).astype(np.float32)
    run = collect_run(make_run(tmp_path / "r", "cc", probs.argmax(1), targets, [1.0], probs=probs))
    assert plot_map(run, "pca")[:8] == b"\x89PNG\r\n\x1a\n"
    x = rng.normal(size=(50, 5))
    coords = embed_2d(x, "pca")
    from sklearn.decomposition import PCA

    expected = PCA(2).fit_transform(x)
    assert np.allclose(np.abs(coords), np.abs(expected), atol=1e-8)  # PCA up to the sign of each axis
    assert embed_2d(x, "tsne").shape == (50, 2)
    none = collect_run(make_run(tmp_path / "n", "cc", targets, targets, [1.0]))
    assert plot_map(none, "pca") is None  # no features and no probabilities: no map


def test_hungarian_order_and_class_names(two_runs):
    from ccli.report.collect import collect_run
    from ccli.report.figures import class_labels, thumbnail_mosaic

    a, _, targets, good, _ = two_runs
    run = collect_run(a)
    table = run.contingency
    assert table.shape == (3, 3)
    assert np.trace(table) / len(targets) == pytest.approx(clustering_scores(targets, good)["acc"])
    # good = targets + 1 (mod 3) mostly: class c sits with cluster c+1
    assert list(run.clusters) == [1, 2, 0]
    assert class_labels(run, ["zero", "one", "two"]) == ["zero", "one", "two"]
    assert class_labels(run, None) == ["0", "1", "2"]
    images = np.zeros((90, 8, 8, 1), dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(90)
    mosaic, counts = thumbnail_mosaic(images, good, [1, 2, 0], 4)
    assert counts == [int((good == c).sum()) for c in (1, 2, 0)]
    assert mosaic.shape == (2 + 3 * (32 + 2), 2 + 4 * (32 + 2), 3)  # 8-px digits enlarged to 32 px
    first = mosaic[2, 2, 0]  # the top-left pixel of cluster 1's first thumbnail: its image index
    assert good[first] == 1


def test_report_bad_input(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    assert_bad_input(cli("report", tmp_path / "empty"), "empty", "predictions.h5")
    assert_bad_input(cli("report", tmp_path / "missing"), "missing", "does not exist")
    (tmp_path / "afile").write_text("x")
    run = make_run(tmp_path / "r", "cc", np.array([0, 1]), np.array([0, 1]), [1.0])
    assert_bad_input(cli("report", run, "-o", tmp_path / "afile"), "--out")
    assert_bad_input(cli("report", run, "--format", "pdf", "-o", tmp_path / "o1"), "--format pdf")
    assert_bad_input(cli("report", run, "--map", "umap", "-o", tmp_path / "o2"), "--map umap")
    (run / "metrics.jsonl").write_text("{not json\n")
    assert_bad_input(cli("report", run), "metrics.jsonl", "line 1")
    (run / "metrics.jsonl").unlink()
    assert_bad_input(cli("report", run, "-o", tmp_path / "o3"), str(run), "metrics.jsonl")
    assert not any((tmp_path / name).exists() for name in ("o1", "o2", "o3"))


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_html_in_headless_chromium(cli, two_runs, tmp_path):
    """A real browser renders the file alone: a screenshot is taken, every figure decodes with its own size,
    and the page requests no resource at all (every image is inline)."""
    a, b, *_ = two_runs
    out = tmp_path / "rep"
    assert cli("report", a, b, "-o", out, "--format", "html").code == 0
    page = tmp_path / "alone" / "report.html"
    page.parent.mkdir()
    shutil.move(out / "report.html", page)  # nothing beside it
    shot = tmp_path / "shot.png"
    common = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              f"--user-data-dir={tmp_path / 'profile'}", "--no-first-run", "--disable-background-networking",
              "--disable-component-update", "--disable-sync"]
    subprocess.run([*common, f"--screenshot={shot}", "--window-size=1300,4000", page.as_uri()], check=True,
                   timeout=120, capture_output=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    # After load, a probe reports every <img>'s decoded width and every resource the page requested (the
    # Resource Timing list: whatever it fetched over the network or from disk; data: URIs are not fetches).
    probe = ("<script>window.onload=()=>{document.title=[...document.images].map(i=>i.naturalWidth).join(',')"
             "+'|'+performance.getEntriesByType('resource').map(e=>e.name).join(' ')}</script>")
    probed = page.with_name("probe.html")
    probed.write_text(page.read_text().replace("</body>", probe + "</body>"))
    dom = subprocess.run([*common, "--dump-dom", "--virtual-time-budget=5000", probed.as_uri()], check=True,
                         timeout=120, capture_output=True, text=True).stdout
    widths, requested = re.search(r"<title>([^<]*)</title>", dom).group(1).split("|")
    widths = widths.split(",")
    assert len(widths) == 7 and all(int(w) > 100 for w in widths)
    assert requested.split() == []
