"""Run a worker script once in one process and once as two gloo ranks (the DDP tests' launcher)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_and_two_ranks(script: Path, tmp_path: Path, timeout: int = 240) -> tuple[Path, Path]:
    """Run `script OUT` as one process (OUT = tmp/one) and as ranks 0 and 1 (OUT = tmp/two); assert both succeed."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, str(script), str(tmp_path / "one")], env=env, capture_output=True,
                            text=True, timeout=timeout)
    assert single.returncode == 0, single.stderr
    port = str(free_port())
    procs = []
    for rank in range(2):
        penv = {**env, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": port}
        procs.append(subprocess.Popen([sys.executable, str(script), str(tmp_path / "two")], env=penv,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, err
    return tmp_path / "one", tmp_path / "two"


_WORKER = """
import sys, torch, numpy as np
from torch import nn
from ccli.engine import EngineConfig, RunFiles, Task, fit, make_data_path
from ccli.engine.ddp import init_distributed, shutdown
from ccli.data.augment import eval_view
from ccli.losses.cluster import cluster_contrastive_loss
from ccli.losses.nt_xent import nt_xent
from ccli.methods.trainer import gather

out = sys.argv[1]
dist, device = init_distributed("cpu")
rng = np.random.default_rng(0)
images = rng.integers(0, 256, (64, 4, 4, 1), dtype=np.uint8)
labels = np.zeros(64, dtype=np.int64)
torch.manual_seed(0)
model = nn.Sequential(nn.Flatten(), nn.Linear(16, {width}))
losses = []

{loss_step}

data = make_data_path("gpu", images, labels, [eval_view(4)], [0.5], [0.25], 16, device, seed=0, dist=dist)
fit(Task(model, model, loss_step), data, EngineConfig(epochs=2, batch_size=16, optimizer="sgd", lr={lr},
    weight_decay=0.0, knn_every=0), RunFiles.for_output(out), config_record={{}}, dist=dist, device=device)
if dist.is_main:
    torch.save({{"weights": model.state_dict(), "losses": losses}}, out + "/result.pt")
shutdown()
"""


def write_worker(path: Path, loss_step: str, width: int, lr: float) -> Path:
    """A worker script training Linear(16, width) on 64 random 4×4 images with `loss_step` (source
    text defining `loss_step(net, batch, ctx)`; it may append to `losses`); saves weights and losses."""
    path.write_text(_WORKER.format(loss_step=loss_step.strip(), width=width, lr=lr))
    return path
