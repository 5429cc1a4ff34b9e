"""The engine and the representation losses: hand-computed loss values, schedules, LARS,
checkpoints, exact resume, NaN handling, and a 2-process gloo DDP run equal to one process."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ccli.errors import BadInput, CcliError

REPO = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------------------
# Losses against double loops
# ------------------------------------------------------------------------------------------
def _cos(u, v):
    return float(u @ v / (u.norm() * v.norm()))


def test_nt_xent_matches_a_double_loop():
    from ccli.losses.nt_xent import nt_xent

    torch.manual_seed(0)
    a, b = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    tau = 0.5
    z = list(a) + list(b)
    n = len(a)
    total = 0.0
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        denom = sum(math.exp(_cos(z[i], z[k]) / tau) for k in range(2 * n) if k != i)
        total += -math.log(math.exp(_cos(z[i], z[pos]) / tau) / denom)
    assert float(nt_xent(a, b, tau)) == pytest.approx(total / (2 * n), rel=1e-6)


def test_nt_xent_fixed_value():
    from ccli.losses.nt_xent import nt_xent

    # Two orthogonal images whose views coincide: each anchor's positive has similarity 1, its
    # two negatives 0 and 0 → loss = −log(e^{1/τ} / (e^{1/τ} + 2)) with τ = 1.
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    expected = -math.log(math.e / (math.e + 2))
    assert float(nt_xent(a, a.clone(), 1.0)) == pytest.approx(expected, rel=1e-6)


def test_infonce_with_queue_matches_a_double_loop():
    from ccli.losses.moby import infonce_queue, moby_loss

    torch.manual_seed(1)
    l_a, l_b = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    h_a, h_b = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    q_a, q_b = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
    tau = 0.2

    def loop(q, k, queue):
        total = 0.0
        for i in range(len(q)):
            pos = math.exp(_cos(q[i], k[i]) / tau)
            neg = sum(math.exp(_cos(q[i], queue[j]) / tau) for j in range(len(queue)))
            total += -math.log(pos / (pos + neg))
        return total / len(q)

    assert float(infonce_queue(l_a, h_b, q_b, tau)) == pytest.approx(loop(l_a, h_b, q_b), rel=1e-6)
    expected = 0.5 * loop(l_a, h_b, q_b) + 0.5 * loop(l_b, h_a, q_a)
    assert float(moby_loss(l_a, l_b, h_a, h_b, q_a, q_b, tau)) == pytest.approx(expected, rel=1e-6)


def test_multicrop_pairs_and_loss_mean():
    from ccli.losses.nt_xent import multicrop_pairs, nt_xent, nt_xent_multi

    assert multicrop_pairs(2, 2) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3)]
    torch.manual_seed(0)
    views = [torch.randn(4, 3) for _ in range(3)]
    pairs = multicrop_pairs(2, 1)
    expected = sum(float(nt_xent(views[i], views[j], 0.5)) for i, j in pairs) / len(pairs)
    assert float(nt_xent_multi(views, pairs, 0.5)) == pytest.approx(expected, rel=1e-6)


def test_ema_momentum_schedule():
    from ccli.losses.moby import ema_momentum

    assert ema_momentum(0, 100) == pytest.approx(0.996)
    assert ema_momentum(50, 100) == pytest.approx(0.998)
    assert ema_momentum(100, 100) == pytest.approx(1.0)
    assert ema_momentum(25, 100) == pytest.approx(1 - 0.004 * (math.cos(math.pi / 4) + 1) / 2)


# ------------------------------------------------------------------------------------------
# Schedule, optimisers, device, checkpoints
# ------------------------------------------------------------------------------------------
def test_lr_schedule_values():
    from ccli.engine.schedule import lr_at

    # 10 warm-up steps to 0.4, then cosine to 0.0004 over the remaining 90 steps.
    assert lr_at(0, 100, 0.4, 10, 0.0004) == pytest.approx(0.04)
    assert lr_at(9, 100, 0.4, 10, 0.0004) == pytest.approx(0.4)
    assert lr_at(10, 100, 0.4, 10, 0.0004) == pytest.approx(0.4)
    assert lr_at(55, 100, 0.4, 10, 0.0004) == pytest.approx(0.0004 + 0.3996 * 0.5)
    assert lr_at(100, 100, 0.4, 10, 0.0004) == pytest.approx(0.0004)
    assert lr_at(40, 100, 1.0, 0, 0.0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.4)))
    assert lr_at(70, 100, 0.3, 0, 0.0, kind="constant") == 0.3


def test_lars_step_by_hand():
    from ccli.engine.optim import LARS, build_optimizer

    w = nn.Parameter(torch.tensor([[3.0, 4.0]]))  # a 2-d weight, ‖w‖ = 5
    b = nn.Parameter(torch.tensor([1.0]))
    opt = build_optimizer("lars", [w, b], lr=0.1, weight_decay=0.0, momentum=0.9)
    assert isinstance(opt, LARS)
    w.grad = torch.tensor([[0.0, 2.0]])  # ‖g‖ = 2 → trust = 0.001·5/2
    b.grad = torch.tensor([0.5])  # 1-d: excluded from the trust ratio
    opt.step()
    torch.testing.assert_close(w.detach(), torch.tensor([[3.0, 4.0 - 0.1 * 0.0025 * 2.0]]))
    torch.testing.assert_close(b.detach(), torch.tensor([1.0 - 0.1 * 0.5]))
    with pytest.raises(BadInput, match="optimizer 'rmsprop' is unknown"):
        build_optimizer("rmsprop", [w], lr=0.1)


def test_resolve_device():
    from ccli.engine.device import resolve_device

    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(BadInput, match="--device tpu is not a device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(BadInput, match="no CUDA GPU is available"):
            resolve_device("cuda:0")


def test_checkpoint_roundtrip_and_damage(tmp_path):
    from ccli.engine.checkpoint import load_checkpoint, save_atomic

    path = save_atomic({"epoch": 3, "model": {"w": torch.ones(2)}}, tmp_path / "c.pt")
    assert load_checkpoint(path)["epoch"] == 3
    assert not list(tmp_path.glob(".*tmp*"))  # the temporary file was renamed away
    data = path.read_bytes()
    truncated = tmp_path / "t.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInput, match="cannot be read"):
        load_checkpoint(truncated)
    foreign = tmp_path / "f.pt"
    torch.save({"w": torch.ones(1)}, foreign)
    with pytest.raises(BadInput, match="not a ccli checkpoint"):
        load_checkpoint(foreign)


def test_knn_accuracy_by_hand():
    from ccli.engine.monitor import knn_accuracy

    feats = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.6, 0.4]])
    labels = torch.tensor([0, 0, 1, 1, 1])
    # Leave-one-out 1-NN: sample 4's nearest other sample is 1 (cos 0.888, class 0) → wrong;
    # 0↔1 and 2↔3 are each other's nearest → right.
    assert knn_accuracy(feats, labels, k=1) == pytest.approx(4 / 5)


# ------------------------------------------------------------------------------------------
# The loop: resume, config changes, NaN
# ------------------------------------------------------------------------------------------
def _digits_subset(n=192):
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images[:n] * 255 / 16).astype(np.uint8)[..., None], d.target[:n].astype(np.int64)


def _tiny_task(seed=0):
    from ccli.engine import Task
    from ccli.losses.nt_xent import nt_xent
    from ccli.models.contrastive import MultiViewNet
    from ccli.models.heads import MLP

    torch.manual_seed(seed)
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU())
    backbone.out_dim = 16
    model = MultiViewNet(backbone, MLP(16, 16, 8, batch_norm=False))

    def loss_step(net, batch, ctx):
        za, zb = net(batch["views"])
        return {"loss": nt_xent(za, zb, 0.5)}

    return Task(model=model, trainable=model, loss_step=loss_step, embed=backbone)


def _fit(tmp, epochs, augment_on="gpu", resume=False, record=None, monitor=False, lr=0.01, stop_after=None):
    from ccli.data.augment import simclr_view
    from ccli.engine import EngineConfig, KnnMonitor, RunFiles, fit, make_data_path

    images, labels = _digits_subset()
    task = _tiny_task()
    cfg = EngineConfig(epochs=epochs, batch_size=64, optimizer="sgd", lr=lr, warmup_epochs=1)
    data = make_data_path(augment_on, images, labels, [simclr_view(8, 1)] * 2, [0.3], [0.4], 64, "cpu", seed=3,
                          workers=0)
    mon = KnnMonitor(images, labels, [0.3], [0.4], k=5) if monitor else None
    files = RunFiles.for_output(tmp)
    result = fit(task, data, cfg, files, config_record=record or {"lr": lr, "epochs": epochs}, resume=resume,
                 monitor=mon, seed=3)
    return task.model.state_dict(), result, files


@pytest.mark.parametrize("augment_on", ["gpu", "cpu"])
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, augment_on):
    import json

    from ccli.engine.checkpoint import load_checkpoint

    full, _, _ = _fit(tmp_path / "full", 3, augment_on)
    _crash_after(tmp_path / "part", 3, 2, augment_on)
    assert load_checkpoint(tmp_path / "part" / "checkpoint.pt")["epoch"] == 2
    resumed, result, files = _fit(tmp_path / "part", 3, augment_on, resume=True)
    assert result.resumed_from == 2
    for key in full:
        torch.testing.assert_close(resumed[key], full[key], atol=0, rtol=0)
    lines = [json.loads(line) for line in files.metrics.read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3]
    assert load_checkpoint(files.checkpoint)["complete"] is True


def _crash_after(tmp, epochs, stop_epoch, augment_on):
    """Start an `epochs`-epoch run and kill it (an exception) at the first step after `stop_epoch` epochs."""
    from ccli.engine import schedule

    original = schedule.lr_at
    steps = len(_digits_subset()[0]) // 64

    class Crash(Exception):
        pass

    def guarded(step, *args, **kwargs):
        if step >= stop_epoch * steps:
            raise Crash()
        return original(step, *args, **kwargs)

    # fit() looks lr_at up in ccli.engine.schedule at call time, so patching the module works.
    schedule.lr_at = guarded
    try:
        with pytest.raises(Crash):
            _fit(tmp, epochs, augment_on)
    finally:
        schedule.lr_at = original


def test_resume_with_a_changed_config_names_the_keys(tmp_path):
    _fit(tmp_path, 1)
    with pytest.raises(BadInput, match=r"different config: epochs \(1 → 2\), lr \(0.01 → 0.02\)"):
        _fit(tmp_path, 2, resume=True, record={"lr": 0.02, "epochs": 2})


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    from ccli.engine import EngineConfig, RunFiles, fit, make_data_path
    from ccli.data.augment import simclr_view
    from ccli.engine.checkpoint import load_checkpoint

    images, labels = _digits_subset()
    task = _tiny_task()
    inner = task.loss_step

    def poisoned(net, batch, ctx):
        out = inner(net, batch, ctx)
        return {"loss": out["loss"] * float("nan")} if ctx.epoch == 2 else out

    task.loss_step = poisoned
    data = make_data_path("gpu", images, labels, [simclr_view(8, 1)] * 2, [0.3], [0.4], 64, "cpu", seed=0)
    files = RunFiles.for_output(tmp_path)
    with pytest.raises(CcliError, match=r"NaN or infinite at epoch 2 .*last good checkpoint \(epoch 1\)") as err:
        fit(task, data, EngineConfig(epochs=3, batch_size=64, lr=0.01), files, config_record={})
    assert not isinstance(err.value, BadInput)
    assert load_checkpoint(files.checkpoint)["epoch"] == 1


def test_metrics_lines_and_knn_monitor(tmp_path):
    import json

    _, result, files = _fit(tmp_path, 2, monitor=True)
    lines = [json.loads(line) for line in files.metrics.read_text().splitlines()]
    assert len(lines) == 2
    for rec in lines:
        assert set(rec) >= {"epoch", "loss", "lr", "images_per_s", "knn_acc"}
        assert math.isfinite(rec["loss"]) and 0.0 <= rec["knn_acc"] <= 1.0
    # Digits are easy: even an untrained-ish linear net's kNN accuracy is far above chance.
    assert lines[-1]["knn_acc"] > 0.5


def test_epoch_metrics_hook_runs_every_eval_every_epochs_without_changing_training(tmp_path):
    import json

    from ccli.data.augment import simclr_view
    from ccli.engine import EngineConfig, RunFiles, fit, make_data_path

    images, labels = _digits_subset()
    calls = []

    def run(folder, hook):
        task = _tiny_task()
        if hook:
            def epoch_metrics(device):
                # eval mode and no autograd, so BatchNorm statistics and weights stay as trained
                calls.append((task.model.training, torch.is_grad_enabled()))
                weight = task.model.backbone[1].weight
                return {"acc": 0.25, "weight_sum": weight.sum()}

            task.epoch_metrics = epoch_metrics
        data = make_data_path("gpu", images, labels, [simclr_view(8, 1)] * 2, [0.3], [0.4], 64, "cpu", seed=3)
        cfg = EngineConfig(epochs=5, batch_size=64, optimizer="sgd", lr=0.01, eval_every=2)
        files = RunFiles.for_output(folder)
        fit(task, data, cfg, files, config_record={}, seed=3)
        return task.model.state_dict(), [json.loads(x) for x in files.metrics.read_text().splitlines()]

    plain, _ = run(tmp_path / "plain", False)
    hooked, lines = run(tmp_path / "hooked", True)
    assert calls == [(False, False)] * 3
    assert [line["epoch"] for line in lines if "acc" in line] == [2, 4, 5]  # every 2nd and the last
    for line in lines:
        if "acc" in line:
            assert line["acc"] == 0.25 and isinstance(line["weight_sum"], float)
    for key in plain:
        torch.testing.assert_close(hooked[key], plain[key], atol=0, rtol=0)


# ------------------------------------------------------------------------------------------
# DDP: two gloo processes equal one process with the same global batch
# ------------------------------------------------------------------------------------------
# A per-sample loss: the mean over each rank's half, averaged over ranks by DDP's gradient
# all-reduce, equals the mean over the global batch.
_PER_SAMPLE_LOSS = """
def loss_step(net, batch, ctx):
    (x,) = batch["views"]
    return {"loss": ((net(x) - x.flatten(1)[:, :4]) ** 2).sum(1).mean()}
"""


def test_ddp_gloo_two_processes_equal_one_process(tmp_path):
    from tests.ddp_launch import one_and_two_ranks

    from tests.ddp_launch import write_worker

    script = write_worker(tmp_path / "ddp_worker.py", _PER_SAMPLE_LOSS, width=4, lr=0.05)
    one_and_two_ranks(script, tmp_path)
    one = torch.load(tmp_path / "one" / "result.pt")["weights"]
    two = torch.load(tmp_path / "two" / "result.pt")["weights"]
    for key in one:
        torch.testing.assert_close(two[key], one[key], atol=1e-6, rtol=1e-5)
    # The run moved away from its initialisation, so equality is not trivial.
    torch.manual_seed(0)
    init = nn.Sequential(nn.Flatten(), nn.Linear(16, 4)).state_dict()
    assert not torch.allclose(init["1.weight"], one["1.weight"])
    assert (tmp_path / "two" / "checkpoint.pt").is_file()
