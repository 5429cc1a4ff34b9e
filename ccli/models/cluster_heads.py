"""The two heads of contrastive clustering on a shared backbone (CC; DCACN §4).

The instance projector maps the backbone feature to a small L2-normalised space for
instance-level contrast; the cluster head maps it to K soft assignments. They share the
backbone but not each other's weights. No BatchNorm in either head, as in CC's network.py.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ccli.models.heads import MLP


class InstanceProjector(nn.Module):
    """Linear(d, hidden) → ReLU → Linear(hidden, out), L2-normalised (CC's instance projector)."""

    def __init__(self, in_dim: int, hidden: int = 512, out_dim: int = 128):
        super().__init__()
        self.net = MLP(in_dim, hidden, out_dim, layers=2, batch_norm=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(z), dim=1)


class ClusterHead(nn.Module):
    """Linear(d, hidden) → ReLU → Linear(hidden, K) → Softmax: soft cluster assignments p ∈ Δ^{K-1}."""

    def __init__(self, in_dim: int, num_clusters: int, hidden: int = 512):
        super().__init__()
        self.net = MLP(in_dim, hidden, num_clusters, layers=2, batch_norm=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        # The softmax runs in float32: under bf16 autocast small probabilities underflow and
        # the column cosine similarities of the cluster loss become noisy.
        return torch.softmax(self.net(z).float(), dim=1)


class ContrastiveClusterer(nn.Module):
    """Backbone f, instance projector g_inst and cluster head g_clus over a list of views.

    forward(views) returns (h per view, p per view). Consecutive views of one resolution go
    through the backbone in one batch (SwAV's multi-crop grouping, dcacn.md §7), unless
    `bn_per_view`, where each view gets its own pass and so its own BatchNorm statistics, as
    CC's code does (A16). Either way the engine sees a single forward call per step.
    """

    def __init__(self, backbone: nn.Module, feature_dim: int, num_clusters: int, inst_hidden: int = 512,
                 inst_dim: int = 128, clus_hidden: int = 512, bn_per_view: bool = False):
        super().__init__()
        self.backbone = backbone
        self.instance_head = InstanceProjector(feature_dim, inst_hidden, inst_dim)
        self.cluster_head = ClusterHead(feature_dim, num_clusters, clus_hidden)
        self.num_clusters = num_clusters
        self.bn_per_view = bn_per_view

    def forward(self, views) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        if isinstance(views, torch.Tensor):
            views = [views]
        hs: list[torch.Tensor] = []
        ps: list[torch.Tensor] = []
        start = 0
        while start < len(views):
            end = start + 1
            while not self.bn_per_view and end < len(views) and views[end].shape[-2:] == views[start].shape[-2:]:
                end += 1
            z = self.backbone(torch.cat(list(views[start:end])) if end - start > 1 else views[start])
            hs.extend(self.instance_head(z).chunk(end - start))
            ps.extend(self.cluster_head(z).chunk(end - start))
            start = end
        return hs, ps

    @torch.no_grad()
    def assign(self, x: torch.Tensor) -> torch.Tensor:
        """Cluster probabilities of un-augmented images (CC's forward_cluster; argmax gives the label)."""
        return self.cluster_head(self.backbone(x))


@torch.no_grad()
def predict_probabilities(model: ContrastiveClusterer, images: np.ndarray, to_input, device: torch.device,
                          batch_size: int = 512) -> np.ndarray:
    """Soft assignments [N, K] for uint8 images [N, H, W, C] in eval mode (BN running statistics).

    `to_input` turns a uint8 NCHW batch on `device` into the model's float input: the
    evaluation transform (resize and normalise, no augmentation).
    """
    was_training = model.training
    model.eval()
    out = np.empty((len(images), model.num_clusters), dtype=np.float32)
    try:
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size])).to(device).permute(0, 3, 1, 2)
            out[start : start + len(batch)] = model.assign(to_input(batch)).float().cpu().numpy()
    finally:
        model.train(was_training)
    return out
