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
