"""`ccli report` over run folders: table values recomputed from predictions, plots written."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ccli.metrics import clustering_scores
from ccli.store import ArtifactWriter, content_key
from tests.conftest import assert_bad_input


def make_run(folder, method, labels, targets, losses):
    folder.mkdir(parents=True)
    config = {"method": method, "inputs": {"data": "digits"}, "num_clusters": 3}
    with ArtifactWriter(folder / "predictions.h5", "predictions", content_key("predictions", config), config,
                        attrs={"method": method, "num_clusters": 3}) as w:
        w.write("labels", labels)
        w.write("index", np.arange(len(labels)))
        w.write("targets", targets)
    lines = [{"epoch": i + 1, "loss": loss, "epoch_time_s": 2.0, "knn_acc": 0.5 + 0.1 * i} for i, loss in enumerate(losses)]
    lines.append({"final": True, "acc": 0.123})  # a stale figure the report must not trust
    (folder / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return folder


@pytest.fixture
def two_runs(tmp_path):
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 3, 90)
    good = np.where(rng.random(90) < 0.9, (targets + 1) % 3, rng.integers(0, 3, 90))
    bad = rng.integers(0, 3, 90)
    a = make_run(tmp_path / "cc-run", "cc", good, targets, [3.0, 2.5, 2.2])
    b = make_run(tmp_path / "dcacn-run", "dcacn", bad, targets, [4.0, 3.9])
    return a, b, targets, good, bad


def test_report_json_scores_recomputed(cli, two_runs, tmp_path):
    a, b, targets, good, bad = two_runs
    result = cli("report", a, b / "predictions.h5", "-o", tmp_path / "rep", "--json")
    assert result.code == 0, result.err
    rows = json.loads(result.out)
    assert [r["method"] for r in rows] == ["cc", "dcacn"]
    expected = clustering_scores(targets, good)
    assert rows[0]["scores"]["acc"] == expected["acc"] != 0.123
    assert rows[0]["scores"]["nmi"] == expected["nmi"]
    assert rows[1]["scores"]["ari"] == clustering_scores(targets, bad)["ari"]
    assert rows[0]["epochs"] == 3 and rows[0]["train_seconds"] == 6.0


def test_report_files_and_stdout_path(cli, two_runs, tmp_path):
    a, b, targets, good, _ = two_runs
    result = cli("report", a, b, "-o", tmp_path / "rep", "--title", "digits comparison")
    assert result.code == 0, result.err
    md_path = tmp_path / "rep" / "report.md"
    assert result.out.strip() == str(md_path)
    md = md_path.read_text()
    assert "# digits comparison" in md
    assert f"{clustering_scores(targets, good)['acc']:.4f}" in md
    for png in ("scores.png", "training.png", "confusion_cc-run.png", "confusion_dcacn-run.png"):
        data = (tmp_path / "rep" / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
        assert f"({png})" in md
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "<table>" in html and "cc-run" in html


def test_hungarian_order_puts_matches_on_diagonal(two_runs):
    from ccli.report import collect_run

    a, _, targets, good, _ = two_runs
    table = collect_run(a).contingency
    assert table.shape == (3, 3)
    assert np.trace(table) / len(targets) == pytest.approx(clustering_scores(targets, good)["acc"])


def test_report_bad_input(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    assert_bad_input(cli("report", tmp_path / "empty"), "empty", "predictions.h5")
    assert_bad_input(cli("report", tmp_path / "missing"), "missing", "does not exist")
    (tmp_path / "afile").write_text("x")
    run = make_run(tmp_path / "r", "cc", np.array([0, 1]), np.array([0, 1]), [1.0])
    assert_bad_input(cli("report", run, "-o", tmp_path / "afile"), "--out")
    (run / "metrics.jsonl").write_text("{not json\n")
    assert_bad_input(cli("report", run), "metrics.jsonl", "line 1")
