"""The scan+ stage-1 model (scanplus.md §4): MoBY-style online/target networks, two key queues.

Online backbone → projector → predictor, target backbone → projector updated as an EMA with
momentum rising 0.996 → 1 per step (Eq. 8), two FIFO queues of target keys (Q_a of past h_a,
Q_b of past h_b), and the symmetric InfoNCE of Eq. 9–10 with queue negatives only.
"""

from __future__ import annotations


def build_task(cfg, backbone, projector, predictor):
    """The engine Task; returns (task, backbone_prefix, projector_prefix)."""
    from ccli.engine import Task
    from ccli.engine.ddp import all_gather_cat
    from ccli.losses.moby import ema_momentum, moby_loss
    from ccli.models.contrastive import MoBYModel

    tau = float(cfg.temperature)
    model = MoBYModel(backbone, projector, predictor, cfg.queue_size, cfg.proj_dim, cfg.queue_mode == "two")

    def loss_step(net, batch, ctx):
        u_a, u_b = batch["views"][0], batch["views"][1]
        l_a, l_b = net([u_a, u_b])
        h_a, h_b = model.keys([u_a, u_b])
        q_a = model.queue_a.clone()
        q_b = model.queue_b.clone() if model.two_queues else q_a
        loss = moby_loss(l_a, l_b, h_a, h_b, q_a, q_b, tau)
        # Keys join the queues after the loss (they are this step's positives, not negatives).
        model.enqueue(all_gather_cat(h_a, ctx.dist), all_gather_cat(h_b, ctx.dist))
        return {"loss": loss}

    def after_step(ctx):
        model.ema_update(ema_momentum(ctx.step, ctx.total_steps, cfg.ema_base))

    def embed(x):
        return model.online.backbone(x)

    return (Task(model=model, trainable=model.online, loss_step=loss_step, after_step=after_step, embed=embed),
            "online.backbone.", "online.projector.")
