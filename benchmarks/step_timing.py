"""Per-step wall times of the engine's own training loop, for the throughput benchmarks.

`fit()` runs a whole step (augmentation, forward, backward, optimiser) before it asks the data
path for the next batch, so the time between two requests is one step. On CUDA the device is
synchronised first, or the clock would stop at the kernel launch rather than at its end.
"""

from __future__ import annotations

import time
from typing import Callable, Optional


class TimedBatches:
    """A data path that appends each step's seconds to `times`; `stop(times, elapsed)` ends the epoch early."""

    def __init__(self, data, device, times: list[float],
                 stop: Optional[Callable[[list[float], float], bool]] = None):
        self.data, self.device, self.times, self.stop = data, device, times, stop
        self.started = time.perf_counter()

    def __len__(self) -> int:
        return len(self.data)

    def batches(self, epoch):
        import torch

        last = time.perf_counter()
        for batch in self.data.batches(epoch):
            yield batch
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            now = time.perf_counter()
            self.times.append(now - last)
            last = now
            if self.stop is not None and self.stop(self.times, now - self.started):
                return
