"""Neighbour pairs: for each anchor image, one of its mined neighbours, drawn afresh every epoch.

SCAN, scan+ and GCC train on (anchor, neighbour) image pairs: the neighbour is sampled uniformly
from the anchor's row of a neighbour table (a `ccli neighbors` artifact, or the strongest
entries of a `ccli graph` row) and both images are augmented. The table is [N, q] int64 with
−1 padding at the end of rows that have fewer than q neighbours (the multi-view cascade can
keep fewer); a row with none pairs the anchor with itself.

The draw is a hash of (seed, epoch, anchor index), not a stream of random numbers, so it does
not depend on the batch order, the rank or the data-loader worker: the CPU loader and the
device path pick the same neighbour for the same anchor, and a resumed epoch repeats exactly.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on a uint64 array (wrapping arithmetic): well-mixed 64-bit hashes."""
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        return z ^ (z >> np.uint64(31))


def neighbor_counts(table: np.ndarray) -> np.ndarray:
    """Valid entries per row of a −1-padded table."""
    return (np.asarray(table) >= 0).sum(axis=1).astype(np.int64)


def sample_neighbors(table: np.ndarray, index, epoch: int, seed: int, counts: np.ndarray | None = None) -> np.ndarray:
    """One neighbour per anchor in `index`: uniform over the anchor's valid entries, fixed by (seed, epoch, index)."""
    index = np.asarray(index, dtype=np.int64)
    counts = neighbor_counts(table) if counts is None else counts
    with np.errstate(over="ignore"):
        key = (np.uint64(seed) * _MIX1) ^ (np.uint64(epoch) * _MIX2)
        draws = _splitmix64(index.astype(np.uint64) ^ key)
    n_valid = counts[index]
    column = (draws % np.maximum(n_valid, 1).astype(np.uint64)).astype(np.int64)
    chosen = np.asarray(table)[index, column]
    return np.where(n_valid > 0, chosen, index)


def neighbor_table(indices: np.ndarray, num_neighbors: int | None = None, has_self: bool = False) -> np.ndarray:
    """The [N, q] table of a neighbours artifact's `indices`, without the anchor itself, −1-padded.

    `has_self`: the artifact's first column is the row itself (`include_self`); it is dropped, and
    any other occurrence of the anchor in its own row is too (duplicates in the cascade's output).
    """
    table = np.asarray(indices, dtype=np.int64)
    if has_self:
        table = table[:, 1:]
    rows = np.arange(len(table), dtype=np.int64)[:, None]
    table = np.where(table == rows, -1, table)
    table = _compact(table)
    width = int((table >= 0).sum(axis=1).max()) if len(table) else 0
    table = table[:, : max(width, 1)]  # columns that are padding in every row carry nothing
    if num_neighbors is not None:
        table = table[:, :num_neighbors]
    return table


def table_from_graph(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, n: int, num_neighbors: int) -> np.ndarray:
    """The `num_neighbors` heaviest off-diagonal entries of each row of a CSR graph, −1-padded."""
    table = np.full((n, num_neighbors), -1, dtype=np.int64)
    for row in range(n):
        lo, hi = int(indptr[row]), int(indptr[row + 1])
        cols, weights = np.asarray(indices[lo:hi], dtype=np.int64), np.asarray(data[lo:hi], dtype=np.float64)
        keep = (cols != row) & (weights > 0)
        cols, weights = cols[keep], weights[keep]
        order = np.argsort(-weights, kind="stable")[:num_neighbors]
        table[row, : len(order)] = cols[order]
    return table


def _compact(table: np.ndarray) -> np.ndarray:
    """Move each row's valid (≥ 0) entries to the front, keeping their order."""
    valid = table >= 0
    order = np.argsort(~valid, axis=1, kind="stable")
    return np.take_along_axis(table, order, axis=1)
