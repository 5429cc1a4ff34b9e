"""CCTC, contrastive clustering with trend consistency (seed 000; cctc-and-cdec.md Part A).

GCC (ccli.methods.graph_contrast) plus the trend-consistency module (ccli.methods.trend), as
two stages of one run, holding the three phases of §12.2:
  warmup  S0, the SimCLR warm-up; the feature memory fills;
  trend   S1 then S2 with one optimiser and one epoch counter (§12.3's single loop):
          S1 (absolute epochs simclr_epochs … E1 − 1) is L^gcc_InfoNCE + L_clu on the kNN graph;
          from its second epoch the hard labels of an eval-mode pass over all images are pushed
          into the N × w queue C at every epoch start; S2 (E1 on) adds α·L_z + β·L_y with
          W = sg[M_S ⊙ 𝕀(M_S ≥ δ)] per batch (§8.6, §9), δ = δ1 before absolute epoch
          `delta_switch`, δ2 after it (§10.2).
S1 and S2 are not separate stages: a stage boundary starts a fresh optimiser (Adam's moments
reset) and restarts the stage-local epoch that seeds the batch order and the neighbour draws, so
the first S2 epochs replayed S1's. On digits seed 3 that split put the run in a partition that
the trend terms then locked (0.780 ACC with a 30-epoch warm-up; BENCHMARKS.md "gcc and cctc").
The queue is a buffer of the model: every stage checkpoint carries it and `--resume` continues it.
`trend_matrix: M` is Table 3's middle row (M without S); `none` is GCC's objective.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ccli.errors import BadInput
from ccli.methods.graph_contrast import GraphConfig, check_graph_config, graph_model, graph_stages
from ccli.methods.registry import Inputs, Prediction, RunContext
from ccli.methods.trainer import Plan, Setup, check_common, predict_probabilities, train
from ccli.methods.trend import TREND_MATRICES, TrendQueue, delta_at


@dataclass
class Config(GraphConfig):
    """GCC's keys and the trend module's (§11)."""

    window: int = 3  # w: epochs of hard labels in the queue (A-8: not given; Fig. 2 shows 3)
    delta1: float = 0.85  # δ before delta_switch (Table 4, CIFAR-10)
    delta2: float = 0.90  # δ from delta_switch on (Table 4, CIFAR-10)
    delta_switch: int = 400  # 0-based absolute epoch where δ2 takes over (§10.1: "first 400 epochs")
    trend_start: int = 0  # E1, absolute epoch of the first trend epoch; 0 = simclr_epochs + window
    alpha: float = 0.7  # weight of L_z
    beta: float = 0.3  # weight of L_y (the paper's L_c)
    trend_matrix: Literal["MS", "M", "none"] = "MS"
    consistency_norm: Literal["b2", "pairs"] = "b2"


def trend_start(config: Config) -> int:
    return int(config.trend_start or config.simclr_epochs + config.window)


def validate(inputs: Inputs, config: Config, num_clusters: int) -> None:
    check_graph_config(config)
    if config.window < 2:
        raise BadInput(f"window={config.window} must be at least 2: trend consistency compares labels of several epochs.")
    for key in ("delta1", "delta2"):
        value = getattr(config, key)
        if not 0.0 < value <= 1.0:
            raise BadInput(f"{key}={value} must lie in (0, 1].")
    if config.delta1 > config.delta2:
        raise BadInput(f"delta1={config.delta1} is larger than delta2={config.delta2}: the threshold may only rise (§10).")
    if config.delta_switch < 0:
        raise BadInput(f"delta_switch={config.delta_switch} must be 0 or more.")
    if config.trend_matrix not in TREND_MATRICES:
        raise BadInput(f"trend_matrix={config.trend_matrix} must be one of {', '.join(TREND_MATRICES)}.")
    if config.consistency_norm not in ("b2", "pairs"):
        raise BadInput(f"consistency_norm={config.consistency_norm} must be b2 or pairs.")
    if config.alpha < 0 or config.beta < 0:
        raise BadInput(f"alpha={config.alpha} and beta={config.beta} must be 0 or more.")
    epochs, start = config.engine.epochs, trend_start(config)
    if config.trend_start < 0 or not config.simclr_epochs < start < epochs:
        raise BadInput(f"trend_start={start} must lie after the simclr_epochs={config.simclr_epochs} warm-up and "
                       f"before the {epochs} epochs end.")
    if config.simclr_epochs == 0 and inputs.neighbors is None and inputs.graph is None:
        raise BadInput("simclr_epochs=0 leaves the feature memory empty for the first graph: "
                       "give at least one warm-up epoch, or --neighbors/--graph.")
    check_common(inputs, config)


def build(setup: Setup) -> Plan:
    import torch

    from ccli.data.augment import eval_view
    from ccli.data.gpu_augment import BatchAugmenter
    from ccli.engine.ddp import broadcast_from_main
    from ccli.losses.trend import cluster_consistency_loss, instance_consistency_loss

    config: Config = setup.config
    model = graph_model(setup)
    model.trend = TrendQueue(len(setup.dataset), config.window, setup.num_clusters)
    clean = BatchAugmenter([eval_view(setup.size)], setup.mean, setup.std)
    start = trend_start(config)

    def snapshot(stage, absolute, ctx):
        """§8.3 rule 2: at the start of every epoch after the first graph epoch, push the eval pass's labels."""
        if absolute < config.simclr_epochs + 1:
            return
        gen = torch.Generator(device=setup.device)
        probs = predict_probabilities(model, model.assign, setup.num_clusters, setup.dataset.images,
                                      lambda x: clean(x, gen)[0], setup.device, config.eval_batch_size)
        model.trend.push(torch.from_numpy(probs))
        broadcast_from_main(model.trend.labels, ctx.dist)
        broadcast_from_main(model.trend.soft, ctx.dist)

    def trend_terms(index, u, p1, ctx):
        absolute = config.simclr_epochs + ctx.epoch - 1  # the graph stage follows the warm-up
        delta = delta_at(absolute, config.delta1, config.delta2, config.delta_switch)
        if absolute < start:  # the GCC epochs before E1: the queue fills, the objective is GCC's
            zero = u.new_zeros(())
            return {"loss": zero, "trend_z": zero, "trend_y": zero, "trend_pairs": zero, "delta": torch.tensor(delta)}
        weights = model.trend.weights(index, delta, config.trend_matrix).to(u.device)
        l_z = instance_consistency_loss(weights, u, config.consistency_norm)
        l_y = cluster_consistency_loss(weights, p1, config.consistency_norm)
        return {"loss": config.alpha * l_z + config.beta * l_y, "trend_z": l_z.detach(), "trend_y": l_y.detach(),
                "trend_pairs": (weights > 0).sum().float(), "delta": torch.tensor(delta)}

    extra = None if config.trend_matrix == "none" else trend_terms
    # One graph stage for S1 and S2 (see the module docstring): no optimiser reset, no replay at E1.
    stages = graph_stages(setup, model, [("warmup", config.simclr_epochs, None),
                                         ("trend", config.engine.epochs - config.simclr_epochs, extra)],
                          epoch_hook=snapshot)
    record = {"graph_source": "artifact" if model.graph_fixed else "feature memory", "trend_start_effective": start,
              "queue_bytes": model.trend.nbytes()}
    return Plan(model, stages, record=record)


def run(ctx: RunContext) -> Prediction:
    return train(ctx, build)
