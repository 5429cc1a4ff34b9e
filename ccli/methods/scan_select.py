"""Label-free head selection for SCAN's multi-head clustering step (scanplus.md §6.5), and alternatives.

SCAN keeps the head with the lowest SCAN loss over the mined pairs (`loss`). On Fashion-MNIST
(neighbours ~0.80 pure) the heads' losses differ by ~0.04 while their ACC spans 0.56–0.74, so
the loss might rank them poorly; the other rules read the heads' predictions only, never a label:

- `loss`: lowest SCAN loss (consistency − λ·entropy), SCAN's rule.
- `consistency`: lowest consistency term −log⟨p_i, p_j⟩ alone (the entropy term rewards
  balanced but arbitrary splits equally).
- `medoid`: the head whose partition agrees most with the others' (highest mean NMI to the other
  heads): heads that found the data's structure agree with each other, each bad head goes wrong
  in its own way.

`consensus` (every head's clusters matched to the medoid's by Hungarian matching on the
co-assignment counts, the matched probabilities averaged) is measured by
benchmarks/bench_scan_select.py but is not a rule: on Fashion-MNIST it stayed below the
lowest-loss head (BENCHMARKS.md, scan, 2026-12-03 session 2), as did `medoid`; more heads
helped instead.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ccli.errors import BadInput

RULES = ("loss", "consistency", "medoid")


def check_rule(rule: str, num_heads: int) -> None:
    """Bad `head_selection` values, named by the config key."""
    if rule not in RULES:
        raise BadInput(f"head_selection={rule} is not one of {', '.join(RULES)}.")
    if rule == "medoid" and num_heads < 3:
        raise BadInput(f"head_selection={rule} compares the heads with each other and needs num_heads of 3 or more "
                       f"(num_heads={num_heads}).")


def head_losses(probs, table: np.ndarray, entropy_weight: float) -> list[float]:
    """Each head's SCAN loss over the whole set and every mined pair (ccli.losses.scan.scan_loss_over_table).

    `probs` is a sequence of [N, K] tensors or a callable h -> [N, K] with `len` (one head in
    memory at a time: K = 1000 on 1.28M images is 5.1 GB per head). `entropy_weight` 0 gives
    the consistency term alone.
    """
    import torch

    from ccli.losses.scan import scan_loss_over_table

    index = torch.from_numpy(np.asarray(table, dtype=np.int64))
    return [float(scan_loss_over_table(probs[h], index, entropy_weight)) for h in range(len(probs))]


def select_head(losses: Sequence[float]) -> int:
    """The head with the lowest loss (ties: the first); no label is read."""
    return int(np.argmin(np.asarray(losses, dtype=np.float64)))


def choose_head(rule: str, probs, table: np.ndarray, entropy_weight: float) -> tuple[int, list[float]]:
    """The kept head under `rule` and every head's SCAN loss (recorded whatever the rule)."""
    losses = head_losses(probs, table, entropy_weight)
    if rule == "loss":
        return select_head(losses), losses
    if rule == "consistency":
        return select_head(head_losses(probs, table, 0.0)), losses
    if rule == "medoid":
        return medoid([probs[h].argmax(1).cpu().numpy() for h in range(len(probs))]), losses
    raise BadInput(f"head_selection={rule} is not one of {', '.join(RULES)}.")


def pairwise_nmi(assignments: Sequence[np.ndarray]) -> np.ndarray:
    """[H, H] NMI between the heads' hard assignments (symmetric, ones on the diagonal)."""
    from ccli.metrics.clustering import contingency, normalized_mutual_information

    h = len(assignments)
    out = np.eye(h)
    for a in range(h):
        for b in range(a + 1, h):
            out[a, b] = out[b, a] = normalized_mutual_information(contingency(assignments[a], assignments[b]))
    return out


def medoid(assignments: Sequence[np.ndarray]) -> int:
    """The head with the highest mean NMI to the other heads (ties: the first)."""
    nmi = pairwise_nmi(assignments)
    h = len(assignments)
    mean_to_others = (nmi.sum(1) - 1.0) / max(h - 1, 1)
    return int(np.argmax(mean_to_others))


def alignment(reference: np.ndarray, labels: np.ndarray, num_clusters: int) -> np.ndarray:
    """perm[c] = the reference cluster that cluster c of `labels` is matched to (one-to-one, most co-assigned)."""
    from ccli.metrics.clustering import linear_sum_assignment

    counts = np.zeros((num_clusters, num_clusters), dtype=np.int64)  # [own cluster, reference cluster]
    np.add.at(counts, (np.asarray(labels, dtype=np.int64), np.asarray(reference, dtype=np.int64)), 1)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    perm = np.empty(num_clusters, dtype=np.int64)
    perm[rows] = cols
    return perm


def order_to_reference(perm: np.ndarray) -> np.ndarray:
    """Column order that puts a head's outputs in the reference's cluster order: out[:, j] = p[:, order[j]]."""
    return np.argsort(perm)


def consensus(probs: Sequence, reference: int):
    """Mean of every head's probabilities after matching its clusters to head `reference`'s ([N, K] tensor)."""
    ref_labels = probs[reference].argmax(1).cpu().numpy()
    num_clusters = int(probs[reference].shape[1])
    total = None
    for h in range(len(probs)):
        p = probs[h]
        order = order_to_reference(alignment(ref_labels, p.argmax(1).cpu().numpy(), num_clusters))
        aligned = p[:, order]
        total = aligned.clone() if total is None else total + aligned
    return total / len(probs)
