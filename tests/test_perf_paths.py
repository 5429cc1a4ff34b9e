"""Fast paths that must not change results: the NumPy Hungarian against scipy's, eval's imports."""

import subprocess
import sys

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment as scipy_lsap

from ccli.metrics.clustering import _lsap, linear_sum_assignment


def _cases():
    rng = np.random.default_rng(0)
    for trial in range(40):
        nr, nc = int(rng.integers(1, 12)), int(rng.integers(1, 12))
        if trial % 3 == 0:
            yield rng.integers(0, 3, (nr, nc))  # many ties
        elif trial % 3 == 1:
            yield rng.integers(0, 1000, (nr, nc))  # contingency-like counts
        else:
            yield rng.standard_normal((nr, nc))
    yield np.zeros((5, 5))
    yield np.ones((3, 7))
    yield np.eye(6)[::-1] * 10


@pytest.mark.parametrize("maximize", [True, False])
def test_own_assignment_is_scipys_result_for_result(maximize):
    for cost in _cases():
        rows, cols = _lsap(cost, maximize)
        ref_rows, ref_cols = scipy_lsap(cost, maximize=maximize)
        np.testing.assert_array_equal(rows, ref_rows)
        np.testing.assert_array_equal(cols, ref_cols)


def test_large_problems_go_to_scipy_with_the_same_answer():
    cost = np.random.default_rng(1).integers(0, 50, (150, 140))
    rows, cols = linear_sum_assignment(cost, maximize=True)
    ref = scipy_lsap(cost, maximize=True)
    np.testing.assert_array_equal(cols, ref[1])
    own = _lsap(cost, True)
    np.testing.assert_array_equal(own[1], ref[1])
    assert cost[own].sum() == cost[ref].sum()


def test_lsap_refuses_nan():
    with pytest.raises(ValueError):
        _lsap(np.array([[np.nan, 1.0], [1.0, 0.0]]), False)


def test_eval_imports_neither_scipy_torch_nor_sklearn(tmp_path):
    """`ccli eval` on a small run stays a light process: no scipy.optimize, torch, sklearn, faiss."""
    labels = np.random.default_rng(0).integers(0, 10, 500)
    np.save(tmp_path / "true.npy", labels)
    np.save(tmp_path / "pred.npy", (labels + 1) % 10)
    code = (
        "import sys\n"
        "from ccli.cli.main import run\n"
        "try:\n"
        f"    run(['eval', {str(tmp_path / 'pred.npy')!r}, '--labels', {str(tmp_path / 'true.npy')!r}, '--json'])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "heavy = [m for m in ('scipy.optimize', 'torch', 'sklearn', 'faiss', 'scipy') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr
    assert '"acc": 1.0' in out.stdout


def test_step_progress_is_silent_off_a_terminal_and_counts_on_one(capsys):
    from ccli.engine.progress import StepProgress

    with StepProgress("k-means", 10) as bar:  # pytest's stderr is no terminal
        assert not bar.enabled
        bar.update(5)
    assert capsys.readouterr().err == ""
    with StepProgress("k-means", 10, enabled=True) as bar:
        bar.update(7)
        assert bar._progress.tasks[0].completed == 7
