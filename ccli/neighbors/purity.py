"""Neighbour purity: how often a point's neighbours share its ground-truth label.

Purity is a diagnostic only (it reads labels, which never feed back into mining). It is
the mean over (anchor, neighbour) pairs whose two labels are both known (−1 = unknown) of
[label(anchor) == label(neighbour)], which is what SCAN and GCC log as kNN "accuracy"
when every label is known.
"""

from __future__ import annotations

import numpy as np

# Prefix cut-offs reported beside k (those below k), so one table shows the trend.
PREFIXES = (1, 5, 10, 20, 50, 100)

_BLOCK_ROWS = 65536


def neighbor_purity(indices: np.ndarray, labels: np.ndarray) -> float | None:
    """Fraction of neighbour pairs (both labels known) that share the anchor's label; None if no such pair."""
    labels = np.asarray(labels).reshape(-1)
    same = 0
    known = 0
    for start in range(0, len(indices), _BLOCK_ROWS):
        idx = np.asarray(indices[start : start + _BLOCK_ROWS])
        anchor = labels[start : start + len(idx), None]
        neighbour = labels[np.clip(idx, 0, None)]
        valid = (anchor >= 0) & (neighbour >= 0) & (idx >= 0)
        same += int(((neighbour == anchor) & valid).sum())
        known += int(valid.sum())
    return same / known if known else None


def purity_at(indices: np.ndarray, labels: np.ndarray, k: int | None = None) -> dict[int, float]:
    """Purity of the first j columns for each prefix j < k, and for k itself (indices are ranked)."""
    k = indices.shape[1] if k is None else min(k, indices.shape[1])
    cuts = [j for j in PREFIXES if j < k] + [k]
    out = {}
    for j in cuts:
        value = neighbor_purity(indices[:, :j], labels)
        if value is not None:
            out[j] = value
    return out
