"""Learning-rate schedules, evaluated per optimiser step.

`lr_at` is the one schedule every method uses: linear warm-up from 0 to the base rate over
`warmup_steps`, then either constant or a half-cosine from the base rate to `final_lr` at
`total_steps` (SGDR without restarts, as SimCLR/MoCo v2/GCC use).
"""

from __future__ import annotations

import math


def lr_at(step: int, total_steps: int, base_lr: float, warmup_steps: int = 0, final_lr: float = 0.0,
          kind: str = "cosine") -> float:
    """Learning rate for 0-based optimiser step `step` of `total_steps`."""
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if kind == "constant":
        return base_lr
    if kind != "cosine":
        raise ValueError(f"unknown schedule {kind!r}")
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, max(0.0, (step - warmup_steps) / span))
    return final_lr + (base_lr - final_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer, lr: float) -> None:
    """Set every param group's rate, honouring a per-group `lr_scale` (e.g. heads trained faster)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
