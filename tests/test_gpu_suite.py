"""benchmarks/gpu_suite.py: the prepared GPU run of issue 17, checked here in its CPU --smoke mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "benchmarks" / "gpu_suite.py"
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_suite  # noqa: E402


def run_suite(tmp_path: Path, *extra: str, timeout: int = 600) -> dict:
    out = tmp_path / "suite.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CCLI_CACHE": str(tmp_path / "cache")}
    env.pop("OUT", None)
    proc = subprocess.run([sys.executable, str(SUITE), "--smoke", "--out", str(out), *extra], env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == str(out)
    return json.loads(out.read_text())


def positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value) and value > 0


def check_knn(sec: dict, n: int = 3000) -> None:
    assert sec["status"] == "ok", sec.get("reason")
    fig = sec["figures"]
    assert fig["setup"]["n"] == n and fig["setup"]["k"] == 20 and fig["setup"]["backend"] == "torch"
    search = fig["search"]
    assert search["rows_searched"] == n and search["complete"] is True
    for key in ("seconds", "rows_per_s", "seconds_for_all_rows", "filter_tflops_effective"):
        assert positive(search[key]), key
    exact = fig["exactness"]
    assert exact["rows_checked"] == 64
    assert exact["rows_scores_equal"] == 64 and exact["passed"] is True
    assert 0 <= exact["max_abs_score_error_of_returned_float32"] < 1e-5


def test_smoke_knn_section_is_exact_without_faiss(tmp_path):
    result = run_suite(tmp_path, "--sections", "knn")
    assert result["smoke"] is True and result["blocked_imports"] == "faiss"  # the GPU machine has no faiss
    assert set(result["sections"]) == {"knn"}
    check_knn(result["sections"]["knn"])
    assert result["machine"]["cores"] >= 1 and "torch" in result["machine"]
    assert "finished_utc" in result


def test_spent_budget_skips_sections_and_still_writes_the_json(tmp_path):
    result = run_suite(tmp_path, "--sections", "knn,fashion", "--budget", "10")
    for name in ("knn", "fashion"):
        sec = result["sections"][name]
        assert sec["status"] == "skipped" and "budget" in sec["reason"] and sec["figures"] == {}


def test_check_exact_catches_a_wrong_neighbour_and_accepts_ties():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 8))
    x[1] = x[0]  # a duplicate: rows tied with it may come in either order
    x = torch.from_numpy(x / np.linalg.norm(x, axis=1, keepdims=True)).float()
    x64 = x.double()
    sim = x64 @ x64.T
    sim.fill_diagonal_(-np.inf)
    vals, idx = torch.topk(sim, 5, dim=1)
    idx, scores = idx.numpy().copy(), vals.float().numpy()
    rows = np.arange(300)
    assert gpu_suite.check_exact(x, idx, scores, rows, 5, torch.device("cpu"))["passed"] is True
    # A row listing both duplicates (equal scores) may give them in either order: still exact.
    tied = [r for r in rows if 0 in idx[r] and 1 in idx[r]]
    assert tied
    r = tied[0]
    swapped = idx.copy()
    a, b = list(swapped[r]).index(0), list(swapped[r]).index(1)
    swapped[r, a], swapped[r, b] = 1, 0
    res = gpu_suite.check_exact(x, swapped, scores, rows, 5, torch.device("cpu"))
    assert res["passed"] is True and res["rows_ids_equal"] == 299
    wrong = idx.copy()
    far = int(torch.argmin(sim[3].masked_fill(torch.isinf(sim[3]), np.inf)))
    wrong[3, -1] = far
    res = gpu_suite.check_exact(x, wrong, scores, rows, 5, torch.device("cpu"))
    assert res["passed"] is False and res["rows_scores_equal"] == 299


def test_idx_stand_in_reads_as_fashion_mnist(tmp_path):
    from ccli.data.sources import load_dataset

    folder = gpu_suite.write_idx_standin(tmp_path / "idx", n_train=50, n_test=20)
    assert sorted(p.name for p in folder.iterdir()) == sorted(gpu_suite.FASHION_FILES)
    ds = load_dataset(f"fashion-mnist:{folder}")
    assert ds.images.shape[:3] == (70, 28, 28) and ds.images.dtype == np.uint8
    assert ds.labels.min() >= 0 and ds.labels.max() <= 9
    # The class is written into the image as a bright bar at rows 2 + 2y … 4 + 2y.
    bars = [int(np.argmax(img[:, 4:24].reshape(28, -1).mean(1) > 200)) for img in ds.images[:, :, :, 0]]
    assert [(b - 2) // 2 for b in bars] == list(ds.labels)


def test_bf16_peak_table():
    assert gpu_suite.bf16_peak("NVIDIA H200", 0)["bf16_dense_tflops"] == 989.4
    unknown = gpu_suite.bf16_peak("Some GPU", 0)
    assert unknown["bf16_dense_tflops"] is None and unknown["assumed"] is True
    assert gpu_suite.bf16_peak("Some GPU", 123.0)["bf16_dense_tflops"] == 123.0


def test_sharded_section_is_skipped_without_two_gpus_and_starts_no_process(tmp_path):
    # A full (not --smoke) run on a machine with fewer than 2 GPUs: skipped in the driver, zero seconds.
    out = tmp_path / "suite.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CCLI_CACHE": str(tmp_path / "cache"), "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, str(SUITE), "--sections", "sharded", "--out", str(out)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sec = json.loads(out.read_text())["sections"]["sharded"]
    assert sec == {"status": "skipped", "cap_s": 0, "wall_s": 0.0, "figures": {},
                   "reason": "needs at least 2 visible GPUs; 0 visible"}


def check_sharded(sec: dict, n: int = 600) -> None:
    assert sec["status"] == "ok", sec.get("reason")
    fig = sec["figures"]
    assert fig["setup"]["backend"] == "gloo (CPU)" and fig["setup"]["synthetic"] is True
    for stage in ("embed", "neighbors"):
        assert positive(fig[stage]["one_process"]["wall_s"]) and positive(fig[stage]["torchrun_2"]["wall_s"])
        assert fig[stage]["speedup_2_over_1"] == fig[stage]["one_process"]["wall_s"] / fig[stage]["torchrun_2"]["wall_s"]
        assert fig[stage]["artifacts"]["same_key"] is True
    assert fig["embed"]["artifacts"]["datasets"] == ["features", "views/strong", "views/weak"]
    assert fig["embed"]["artifacts"]["max_abs_diff"] == 0.0  # CPU: bit-identical rows
    assert fig["neighbors"]["artifacts"]["rows"] == n and fig["neighbors"]["artifacts"]["rows_equal"] == n


@pytest.mark.slow
def test_smoke_sharded_section_compares_one_process_with_two_gloo_ranks(tmp_path):
    result = run_suite(tmp_path, "--sections", "sharded")
    check_sharded(result["sections"]["sharded"])
    assert "| sharded | ok | embed " in gpu_suite.summarize(result)


@pytest.mark.slow
def test_smoke_runs_every_section(tmp_path):
    result = run_suite(tmp_path, timeout=1200)
    secs = result["sections"]
    assert list(secs) == list(gpu_suite.SECTIONS)
    for name, sec in secs.items():
        assert sec["status"] == "ok", (name, sec.get("reason"))
        assert positive(sec["wall_s"]) and sec["wall_s"] <= sec["cap_s"] + gpu_suite.KILL_GRACE + 5
    aug = secs["augment"]["figures"]
    for path in ("gpu", "cpu"):
        assert positive(aug[f"augment_on_{path}"]["images_per_s"]) and aug[f"augment_on_{path}"]["timed_steps"] >= 2
    assert positive(aug["ratio_gpu_over_cpu"]) and isinstance(aug["bar_5x_met"], bool)
    mfu = secs["mfu"]["figures"]
    assert positive(mfu["flops"]["16"]["per_step"])
    assert mfu["flops"]["16"]["per_image"] == mfu["flops"]["16"]["per_step"] / 16
    assert len(mfu["variants"]) == 7
    for name, v in mfu["variants"].items():
        assert positive(v["images_per_s"]) and positive(v["achieved_tflops"]) and v["final_loss_finite"], name
        assert v["mfu"] is None  # no known peak on a CPU
    assert mfu["best"]["variant"] in mfu["variants"]
    check_knn(secs["knn"])
    fashion = secs["fashion"]["figures"]
    assert "stand-in" in fashion["data_note"] and fashion["epochs"] == 1
    run = fashion["run"]
    assert run["epochs_done"] == 1 and positive(run["wall_s"])
    assert 0 < run["acc"] <= 1 and 0 <= run["nmi"] <= 1 and fashion["acc"] == run["acc"]
    check_sharded(secs["sharded"])
    table = gpu_suite.summarize(result)
    assert table.count("| ok |") == 5 and "exact on 64/64" in table


# benchmarks/imagenet_plan.py: the per-item costs behind the ImageNet-1k plan
import imagenet_plan  # noqa: E402


def test_plan_extrapolation_cost_models():
    from ccli.neighbors.knn_faiss import default_nlist

    km = imagenet_plan.extrapolate({"n": 20_000, "k": 100, "cpu_s_per_iteration": 0.5}, "kmeans", 40_000, 1000)
    assert km["factor"] == 20.0 and km["cpu_s_per_iteration"] == 10.0  # ∝ N·K
    n = 20_000
    ivf = imagenet_plan.extrapolate({"n": n, "cpu_seconds": 2.0, "rows_scanned_per_query": n * 16 / default_nlist(n)},
                                    "ivf", 80_000)
    # nlist = 2·√N (above faiss's 39 points per list): rows scanned per query grow as √N, the search as N^1.5.
    assert default_nlist(80_000) == 2 * default_nlist(n) or abs(default_nlist(80_000) / default_nlist(n) - 2) < 0.01
    assert ivf["factor"] == pytest.approx(4 * (80_000 * 16 / default_nlist(80_000)) / (n * 16 / default_nlist(n)))
    assert ivf["cpu_seconds"] == pytest.approx(2.0 * ivf["factor"])


def test_plan_kmeans_cost_is_measured_per_iteration():
    x = imagenet_plan.unit_rows(600, 8, centres=20)
    assert x.shape == (600, 8) and np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-5)
    m = imagenet_plan.kmeans_cost(x, 10, iters=4)
    # Up to 4 Lloyd iterations (it stops early once no label changes), each timed once.
    assert 2 <= m["iterations"] <= 4 and m["gflop_per_iteration"] == 2 * 600 * 10 * 8 / 1e9
    assert positive(m["total_s"]) and positive(m["cpu_s_per_iteration"]) and m["s_per_iteration"] >= 0


@pytest.mark.slow
def test_plan_backbone_flops_match_torchvision():
    flops = imagenet_plan.backbone_flops(("resnet18-imagenet", "resnet50-imagenet"))
    # torchvision's model cards: ResNet-18 1.81 GMACs, ResNet-50 4.09 GMACs at 224 px (2 FLOPs per MAC).
    assert flops["resnet18-imagenet"]["forward_gflops_per_image"] == pytest.approx(2 * 1.814, rel=0.01)
    assert flops["resnet50-imagenet"]["forward_gflops_per_image"] == pytest.approx(2 * 4.089, rel=0.01)
    for f in flops.values():
        assert 2.5 < f["forward_backward_gflops_per_image"] / f["forward_gflops_per_image"] < 3.5
