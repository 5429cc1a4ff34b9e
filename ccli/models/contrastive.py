"""Networks for contrastive pretraining: a multi-view wrapper and the MoBY-style online/target pair.

`MultiViewNet(backbone, projector, predictor=None)` maps a list of views to a list of outputs;
consecutive views of the same size go through the backbone in one batch (SwAV's multi-crop
wrapper), so a step makes one forward call per resolution and DDP sees a single forward.

`MoBYModel` is scan+ stage 1 (scanplus.md §4.2, §4.5): the online `MultiViewNet` (backbone →
projector → predictor), a target backbone and projector that start as exact copies and are
updated only by `ema_update(m)`, and FIFO queues of L2-normalised target keys kept as buffers
(so they are checkpointed and moved with the model).
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class MultiViewNet(nn.Module):
    """backbone → projector [→ predictor] on a list of views; equal-size views share one pass."""

    def __init__(self, backbone: nn.Module, projector: nn.Module, predictor: nn.Module | None = None):
        super().__init__()
        self.backbone = backbone
        self.projector = projector
        self.predictor = predictor

    def forward(self, views):
        if isinstance(views, torch.Tensor):
            views = [views]
        outs, start = [], 0
        while start < len(views):
            end = start
            while end < len(views) and views[end].shape[-2:] == views[start].shape[-2:]:
                end += 1
            z = self.projector(self.backbone(torch.cat(list(views[start:end]))))
            if self.predictor is not None:
                z = self.predictor(z)
            outs.extend(z.chunk(end - start))
            start = end
        return outs


class MoBYModel(nn.Module):
    """Online network (trained), EMA target network and the key queues."""

    def __init__(self, backbone: nn.Module, projector: nn.Module, predictor: nn.Module, queue_size: int, dim: int,
                 two_queues: bool = True):
        super().__init__()
        self.online = MultiViewNet(backbone, projector, predictor)
        self.target_backbone = copy.deepcopy(backbone)
        self.target_projector = copy.deepcopy(projector)
        for p in list(self.target_backbone.parameters()) + list(self.target_projector.parameters()):
            p.requires_grad_(False)
        # Queues start as L2-normalised Gaussian noise (scanplus.md §4.5), from a fixed seed so
        # two runs under one --seed differ only where the seed says.
        g = torch.Generator().manual_seed(0)
        self.register_buffer("queue_a", nn.functional.normalize(torch.randn(queue_size, dim, generator=g), dim=1))
        self.register_buffer(
            "queue_b",
            nn.functional.normalize(torch.randn(queue_size, dim, generator=g), dim=1) if two_queues
            else torch.empty(0, dim),
        )
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self.two_queues = two_queues

    @torch.no_grad()
    def keys(self, views):
        """L2-normalised target keys h of each view (float32)."""
        feats = self.target_projector(self.target_backbone(torch.cat(list(views))))
        return nn.functional.normalize(feats.float(), dim=1).chunk(len(views))

    @torch.no_grad()
    def enqueue(self, h_a: torch.Tensor, h_b: torch.Tensor) -> None:
        """Overwrite the oldest rows with this step's keys (Q_a ← h_a, Q_b ← h_b; single mode: h_a only)."""
        k = self.queue_a.shape[0]
        n = min(len(h_a), k)
        rows = (self.queue_ptr + torch.arange(n, device=h_a.device)) % k
        self.queue_a[rows] = h_a[:n].to(self.queue_a.dtype)
        if self.two_queues:
            self.queue_b[rows] = h_b[:n].to(self.queue_b.dtype)
        self.queue_ptr.copy_((self.queue_ptr + n) % k)

    @torch.no_grad()
    def ema_update(self, m: float) -> None:
        """scan+ Eq. 7: θ_target ← m·θ_target + (1 − m)·θ_online, for backbone and projector."""
        online = list(self.online.backbone.parameters()) + list(self.online.projector.parameters())
        target = list(self.target_backbone.parameters()) + list(self.target_projector.parameters())
        torch._foreach_mul_(target, m)
        torch._foreach_add_(target, online, alpha=1.0 - m)
        # BN running statistics follow the online network the same way (counters are copied).
        for src, dst in ((self.online.backbone, self.target_backbone), (self.online.projector, self.target_projector)):
            for b_src, b_dst in zip(src.buffers(), dst.buffers()):
                if b_dst.dtype.is_floating_point:
                    b_dst.mul_(m).add_(b_src, alpha=1.0 - m)
                else:
                    b_dst.copy_(b_src)
