"""SimCLR (Chen et al. 2020): NT-Xent over two views, or multi-crop global–global and global–local pairs."""

from __future__ import annotations


def build_task(cfg, backbone, projector, n_global: int = 2, n_local: int = 0):
    """The engine Task; returns (task, backbone_prefix, projector_prefix)."""
    from ccli.engine import Task
    from ccli.engine.ddp import all_gather_with_grad
    from ccli.losses.nt_xent import multicrop_pairs, nt_xent, nt_xent_multi
    from ccli.models.contrastive import MultiViewNet

    tau = float(cfg.temperature)
    model = MultiViewNet(backbone, projector)
    pairs = multicrop_pairs(n_global, n_local)

    def loss_step(net, batch, ctx):
        z = [all_gather_with_grad(v, ctx.dist) for v in net(batch["views"])]  # the global batch's negatives
        return {"loss": nt_xent(z[0], z[1], tau) if len(z) == 2 else nt_xent_multi(z, pairs, tau)}

    def embed(x):
        return model.backbone(x)

    return Task(model=model, trainable=model, loss_step=loss_step, embed=embed), "backbone.", "projector."
