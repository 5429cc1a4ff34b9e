"""SCAN's self-labelling objective (Van Gansbeke et al., ECCV 2020, §3.3 and Eq. 3; scanplus.md §6.6).

Confident predictions on a weakly augmented image become pseudo-labels for its strongly
augmented view: with p = softmax(weak logits), the samples with max_c p_c > threshold keep
ŷ = argmax_c p_c, and the strong view's logits are trained with cross-entropy on ŷ. Class
balancing (SCAN's `ConfidenceBasedCE` with `apply_class_balancing`) weights each class by the
inverse of its frequency among the confident samples of the batch, w_c = n / n_c, so a
dominant cluster does not absorb the others; the weighted mean divides by Σ w_ŷ.
"""

from __future__ import annotations

import torch


def confident_targets(weak_logits: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask [B] bool, targets [B] long): which samples are confident (max p > threshold) and their argmax."""
    probs = torch.softmax(weak_logits.detach().float(), dim=1)
    top, target = probs.max(dim=1)
    return top > threshold, target


def balance_weights(targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """w_c = n / n_c over the confident targets (n of them); 1 for classes with no confident sample."""
    n = targets.numel()
    counts = torch.bincount(targets, minlength=num_classes).to(torch.float32)
    weights = torch.ones(num_classes, dtype=torch.float32, device=targets.device)
    present = counts > 0
    weights[present] = n / counts[present]
    return weights


def self_label_loss(weak_logits: torch.Tensor, strong_logits: torch.Tensor, threshold: float,
                    balance: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """SCAN Eq. 3 (self-labelling): masked cross-entropy of the strong view on the weak view's confident argmax.

    Returns (loss, fraction of confident samples). With no confident sample the loss is 0 and
    still carries a graph (so the step runs, and under DDP every rank reduces the same tensors).
    """
    mask, target = confident_targets(weak_logits, threshold)
    fraction = mask.float().mean()
    if not bool(mask.any()):
        return strong_logits.sum() * 0.0, fraction
    chosen = target[mask]
    weight = balance_weights(chosen, strong_logits.shape[1]) if balance else None
    loss = torch.nn.functional.cross_entropy(strong_logits[mask].float(), chosen, weight=weight)
    return loss, fraction
