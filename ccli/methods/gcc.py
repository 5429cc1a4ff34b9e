"""GCC, graph contrastive clustering (Zhong et al., ICCV 2021) as CCTC's base (cctc-and-cdec.md §15, Table 3 row 1).

Two stages of one run (§12.2 without the trend phase):
  warmup  SimCLR warm-up (L^warm, §8.1) while the feature memory collects view-2 embeddings;
  gcc     w_inst·L^gcc_InfoNCE (kNN-graph-weighted, neighbour images in the batch) + w_clu·L_clu
          (column contrast against an augmented kNN neighbour, + λ L_au); the graph is rebuilt
          from the memory every `graph_every` epochs, or is a `--neighbors`/`--graph` table.
Labels are the cluster head's argmax on un-augmented images. The parts are
ccli.methods.graph_contrast's; the losses ccli.losses.gcc's.
"""

from __future__ import annotations

from dataclasses import dataclass

from ccli.errors import BadInput
from ccli.methods.graph_contrast import GraphConfig, check_graph_config, graph_model, graph_stages
from ccli.methods.registry import Inputs, Prediction, RunContext
from ccli.methods.trainer import Plan, Setup, check_common, train


@dataclass
class Config(GraphConfig):
    """GCC's keys (ccli.methods.graph_contrast.GraphConfig)."""


def check_stages(inputs: Inputs, config: GraphConfig) -> None:
    epochs = config.engine.epochs
    if config.simclr_epochs >= epochs:
        raise BadInput(f"simclr_epochs={config.simclr_epochs} leaves none of the {epochs} epochs for the graph stage.")
    if config.simclr_epochs == 0 and inputs.neighbors is None and inputs.graph is None:
        raise BadInput("simclr_epochs=0 leaves the feature memory empty for the first graph: "
                       "give at least one warm-up epoch, or --neighbors/--graph.")


def validate(inputs: Inputs, config: Config, num_clusters: int) -> None:
    check_graph_config(config)
    check_stages(inputs, config)
    check_common(inputs, config)


def build(setup: Setup) -> Plan:
    config: Config = setup.config
    model = graph_model(setup)
    stages = graph_stages(setup, model, [("warmup", config.simclr_epochs, None),
                                         ("gcc", config.engine.epochs - config.simclr_epochs, None)])
    return Plan(model, stages, record={"graph_source": "artifact" if model.graph_fixed else "feature memory"})


def run(ctx: RunContext) -> Prediction:
    return train(ctx, build)
