"""The one place that changes torch's intra-op thread count.

Two situations call for it, and both restore the caller's setting afterwards (a benchmark or a
test session keeps its own):

- `limit_threads(n, device)`: a config's `threads` key (0 keeps torch's default) for a whole
  training run on the CPU;
- `small_kernel_threads(device)`: loops of many short kernels (a small MLP head, a 1000×1000
  self-expression block). Each kernel synchronises all OpenMP threads, and when other processes
  hold the cores the waiting threads get descheduled; on the shared 2-core test machine two
  threads made such loops 4-10× slower than one (BENCHMARKS.md). Large matmuls keep the default.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator


def _is_cpu(device) -> bool:
    import torch

    return torch.device(device).type == "cpu"


@contextlib.contextmanager
def limit_threads(threads: int, device="cpu") -> Iterator[None]:
    """Run the block with `threads` intra-op threads on the CPU (0 or a GPU device: unchanged)."""
    import torch

    if threads <= 0 or not _is_cpu(device):
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def small_kernel_threads(device) -> Iterator[None]:
    """Run the block on as many threads as there are idle cores (at least one, at most torch's setting)."""
    import torch

    if not _is_cpu(device):
        yield
        return
    before = torch.get_num_threads()
    idle = (os.cpu_count() or 1) - os.getloadavg()[0]
    torch.set_num_threads(max(1, min(before, int(idle))))
    try:
        yield
    finally:
        torch.set_num_threads(before)
