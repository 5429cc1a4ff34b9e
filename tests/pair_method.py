"""A two-stage test method on the clustering base: what every neighbour method will build from.

Stage `warmup` trains CC's two heads on two views; stage `pairs` trains a SCAN-style
consistency between an anchor and a sampled neighbour (ccli.losses.scan). `before_epoch`
counts epochs into a model buffer (checkpointed, so it survives a resume) and records the
neighbour indices the batches carried, so tests can check the data path and the hooks.
"""

from __future__ import annotations

from dataclasses import dataclass

from ccli.config import section
from ccli.engine.loop import EngineConfig
from ccli.methods import cc
from ccli.methods.two_heads import TwoHeadConfig, global_view, two_head_model, two_head_step
from ccli.methods.trainer import Plan, Setup, Stage, check_common, train

SEEN: dict[str, list] = {"before_epoch": [], "pairs": []}


@dataclass
class Config(TwoHeadConfig):
    backbone: str = "small_cnn"
    image_size: int | None = None
    engine: EngineConfig = section(lambda: EngineConfig(epochs=1, batch_size=128, optimizer="adam", lr=1e-3,
                                                        knn_every=0, eval_every=0, threads=1))
    warmup_epochs: int = 1
    flip_p: float = 0.0


def validate(inputs, config, num_clusters):
    check_common(inputs, config)


def build(setup: Setup) -> Plan:
    import dataclasses

    import torch

    from ccli.losses.scan import scan_consistency

    config = setup.config
    model = two_head_model(setup)
    model.register_buffer("epochs_seen", torch.zeros((), dtype=torch.long))
    view = global_view(config, setup.size, setup.channels)

    def count(ctx):
        model.epochs_seen += 1
        SEEN["before_epoch"].append((ctx.stage, ctx.epoch, ctx.step))

    def pair_step(net, batch, ctx):
        SEEN["pairs"].append((batch["index"].clone(), batch["neighbor_index"].clone()))
        _, ps = net([batch["views"][0], batch["neighbor_views"][0]])
        return {"loss": scan_consistency(ps[0], ps[1])}

    warmup = dataclasses.replace(config.engine, epochs=config.warmup_epochs)
    return Plan(model, [
        Stage("warmup", [view, view], two_head_step(lambda hs, ps: cc.cc_loss(hs, ps, config)), engine=warmup,
              before_epoch=count),
        Stage("pairs", [view], pair_step, neighbor_views=[view], before_epoch=count),
    ])


def run(ctx):
    return train(ctx, build)
