"""The label-using kNN monitor: weighted kNN accuracy of the current features, for reporting only.

Following InstDisc/MoCo practice, each sample of a fixed subset is classified by a vote of its
k nearest neighbours (cosine) among the other samples, weighted by exp(s/T). It tells the user
whether the representation is learning class structure; nothing selects on it.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np


def knn_accuracy(features, labels, k: int = 20, temperature: float = 0.07, block: int = 1024) -> float:
    """Leave-one-out weighted kNN accuracy of L2-normalised `features` [N, D] with `labels` [N]."""
    import torch
    import torch.nn.functional as F

    feats = F.normalize(torch.as_tensor(features).float(), dim=1)
    y = torch.as_tensor(labels).long().to(feats.device)
    n = len(feats)
    k = min(k, n - 1)
    classes = int(y.max()) + 1
    correct = 0
    for start in range(0, n, block):
        sim = feats[start : start + block] @ feats.t()
        rows = torch.arange(start, min(n, start + block), device=feats.device)
        sim[torch.arange(len(rows)), rows] = -float("inf")  # leave the sample itself out
        top, idx = sim.topk(k, dim=1)
        votes = torch.zeros(len(rows), classes, device=feats.device)
        votes.scatter_add_(1, y[idx], torch.exp(top / temperature))
        correct += int((votes.argmax(1) == y[rows]).sum())
    return correct / n


class KnnMonitor:
    """Embeds a fixed labelled subset with clean (eval) views and scores kNN accuracy each time it is called."""

    def __init__(self, images_nhwc: np.ndarray, labels: np.ndarray, mean: Sequence[float], std: Sequence[float],
                 max_samples: int = 5000, k: int = 20, temperature: float = 0.07, batch_size: int = 512, seed: int = 0):
        keep = np.flatnonzero(np.asarray(labels) >= 0)
        if len(keep) > max_samples:
            keep = np.sort(np.random.default_rng(seed).choice(keep, max_samples, replace=False))
        self.images = images_nhwc[keep]
        self.labels = np.asarray(labels)[keep]
        self.mean, self.std = list(mean), list(std)
        self.k, self.temperature, self.batch_size = k, temperature, batch_size

    @property
    def usable(self) -> bool:
        return len(self.labels) > self.k and len(np.unique(self.labels)) > 1

    def __call__(self, embed: Callable, device, autocast_ctx=None) -> float:
        import contextlib

        import torch

        mean = torch.tensor(self.mean, device=device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=device).view(1, -1, 1, 1)
        feats = []
        with torch.no_grad(), (autocast_ctx() if autocast_ctx else contextlib.nullcontext()):
            for start in range(0, len(self.images), self.batch_size):
                x = torch.from_numpy(self.images[start : start + self.batch_size]).to(device).permute(0, 3, 1, 2)
                x = (x.float() / 255.0 - mean) / std
                feats.append(embed(x).float())
        return knn_accuracy(torch.cat(feats), torch.from_numpy(self.labels).to(device), self.k, self.temperature)
