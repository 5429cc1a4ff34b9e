"""Whole-run ETA, the long-run estimate line and `embed`'s progress bar (issue 14)."""

from __future__ import annotations

import itertools

import pytest

from ccli.engine import loop


def test_format_duration_by_hand():
    assert loop.format_duration(45) == "45s"
    assert loop.format_duration(192) == "3m12s"
    assert loop.format_duration(3600 + 5 * 60 + 40) == "1h05m"
    assert loop.format_duration(-3) == "0s"


def test_remaining_time_is_a_moving_mean_of_the_last_epochs():
    # last 5 of [100, 10, 20, 30, 40, 50]: mean 30 s × 4 epochs left = 120 s
    assert loop.remaining_time([100.0, 10.0, 20.0, 30.0, 40.0, 50.0], 4) == pytest.approx(120.0)
    assert loop.remaining_time([12.0, 18.0], 3, window=2) == pytest.approx(45.0)
    assert loop.remaining_time([12.0], 0) == 0.0
    assert loop.remaining_time([], 5) == 0.0


def test_run_estimate_and_message():
    # 0.5 s/step × 40 steps × 200 epochs = 4000 s = 1.1 h
    assert loop.run_estimate(0.5, 40, 200) == pytest.approx(4000.0)
    msg = loop.estimate_message(4000.0, 128.0, 200, 40)
    assert "about 1.1 h" in msg and "128 img/s" in msg and "(200 epochs × 40 steps)" in msg and "epochs" in msg


def _run(tmp_path, monkeypatch, seconds_per_tick, epochs=2, later_epochs=0, announce=True):
    """Fit the test_engine tiny task with a fake clock that advances `seconds_per_tick` per reading."""
    from tests.test_engine import _digits_subset, _tiny_task

    from ccli import log
    from ccli.data.augment import simclr_view
    from ccli.engine import EngineConfig, RunFiles, fit, make_data_path

    ticks = itertools.count()
    monkeypatch.setattr(loop, "_clock", lambda: next(ticks) * seconds_per_tick)
    messages = []
    monkeypatch.setattr(log, "info", messages.append)
    monkeypatch.setattr(log, "verbosity", lambda: 0)  # no rich bar; log.info is captured above
    images, labels = _digits_subset()
    data = make_data_path("gpu", images, labels, [simclr_view(8, 1)] * 2, [0.3], [0.4], 64, "cpu", seed=3, workers=0)
    fit(_tiny_task(), data, EngineConfig(epochs=epochs, batch_size=64, lr=0.01, knn_every=0), RunFiles.for_output(tmp_path),
        config_record={}, seed=3, later_epochs=later_epochs, announce=announce)
    return messages


def test_estimate_line_once_for_a_long_run(tmp_path, monkeypatch):
    # 3 steps per epoch (192 images / 64). Clock readings in epoch 1: t0 (0), after step 1 (10 s),
    # after step 3 (20 s): 10 s / 2 steps = 5 s/step, 2 × 64 images / 10 s = 12.8 img/s;
    # 5 s × 3 steps × (2 + 300 later) epochs = 4530 s = 1.26 h.
    msgs = _run(tmp_path, monkeypatch, 10.0, epochs=2, later_epochs=300)
    estimates = [m for m in msgs if m.startswith("this run will take")]
    assert estimates == ["this run will take about 1.3 h at the measured 13 img/s (302 epochs × 3 steps); "
                         "lower epochs or choose a shorter preset to shorten it"]
    epoch_lines = [m for m in msgs if m.startswith("epoch ")]
    assert len(epoch_lines) == 2
    assert "eta" in epoch_lines[0] and "eta" in epoch_lines[1]  # later stages still to come


def test_no_estimate_for_a_short_run_or_a_later_stage(tmp_path, monkeypatch):
    msgs = _run(tmp_path / "a", monkeypatch, 0.001)
    assert not [m for m in msgs if m.startswith("this run will take")]
    msgs = _run(tmp_path / "b", monkeypatch, 1000.0, announce=False)
    assert not [m for m in msgs if m.startswith("this run will take")]
    # ETA: the last epoch of the last stage has nothing left; the first shows one epoch's time.
    lines = [m for m in msgs if m.startswith("epoch ")]
    assert "eta" in lines[0] and "eta" not in lines[1]


def test_epoch_eta_value_from_the_fake_clock(tmp_path, monkeypatch):
    # Without the estimate each epoch reads the clock twice (start, end): 1000 s per epoch; after
    # epoch 1 of 3 (+1 later): 3 epochs × 1000 s = 50m00s; after epoch 2: 2 × 1000 s = 33m20s.
    msgs = _run(tmp_path, monkeypatch, 1000.0, epochs=3, later_epochs=1, announce=False)
    lines = [m for m in msgs if m.startswith("epoch ")]
    assert lines[0].endswith("eta 50m00s"), lines[0]
    assert lines[1].endswith("eta 33m20s") and lines[2].endswith("eta 16m40s"), lines


def test_embed_progress_is_silent_when_stderr_is_not_a_terminal(tmp_path, capsys):
    """`ccli embed` on a non-TTY stderr prints no bar (only what it printed before: nothing with -q)."""
    from tests.test_pretrain_embed import TINY, ccli

    code, out, err = ccli(capsys, *TINY, "-o", tmp_path / "run", "-q")
    assert code == 0, err
    ckpt = out.strip()
    code, out, err = ccli(capsys, "embed", ckpt, "-o", tmp_path / "f.h5")
    assert code == 0, err
    assert "embed" not in err and "━" not in err and "%" not in err, err
    from ccli.engine.progress import StepProgress

    with StepProgress("embed", 10) as bar:  # pytest's stderr is no terminal: disabled
        assert not bar.enabled and bar._progress is None


def test_embed_progress_shows_on_a_terminal(tmp_path, capsys, monkeypatch):
    import io

    from rich.console import Console

    from ccli import log
    from ccli.methods.pretrain.embed import embed
    from tests.test_pretrain_embed import TINY, ccli

    code, out, err = ccli(capsys, *TINY, "-o", tmp_path / "run", "-q")
    assert code == 0, err
    screen = io.StringIO()
    monkeypatch.setattr(log, "_console", Console(file=screen, force_terminal=True, width=100))
    monkeypatch.setattr(log, "verbosity", lambda: 1)
    path, hit = embed(out.strip(), out=tmp_path / "f.h5", batch_size=256)
    assert not hit and path.is_file()
    assert "embed" in screen.getvalue() and "1797/1797" in screen.getvalue()
