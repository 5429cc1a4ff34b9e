"""Contrastive Clustering (Li et al., AAAI 2021): the two-head method dcacn (and cctc) extend.

A shared backbone feeds an instance projector (NT-Xent over the rows of two views, τ_I) and
a softmax cluster head (NT-Xent over the K columns, τ_C, plus the entropy term log K − H(π)).
Labels are the argmax of the cluster head on un-augmented images; no k-means anywhere.
Defaults are CC's code (dcacn.md §9.3): ResNet-34 with the ImageNet stem at 224 px, Adam 3e-4,
batch 256, 1000 epochs, τ_I 0.5, τ_C 1.0, seed 42, no input normalisation.

What is CC's own lives here: its loss and its one stage. Its config, views and two-head network
are the family's (ccli.methods.two_heads); the training itself is ccli.methods.trainer's.
"""

from __future__ import annotations

from dataclasses import dataclass

from ccli.methods.registry import Inputs, Prediction, RunContext
from ccli.methods.trainer import Plan, Setup, Stage, check_common, train
from ccli.methods.two_heads import TwoHeadConfig, global_view, two_head_model, two_head_step


@dataclass
class Config(TwoHeadConfig):
    """CC's defaults are the family's (ccli.methods.two_heads.TwoHeadConfig)."""


def cc_loss(hs: list, ps: list, config: Config) -> dict:
    """CC's objective on two views: L = NT-Xent(h^a, h^b; τ_I) + w·[column NT-Xent(p^a, p^b; τ_C) + η(R(P^a)+R(P^b))]."""
    from ccli.losses.cluster import cluster_contrastive_loss
    from ccli.losses.nt_xent import nt_xent

    instance = nt_xent(hs[0], hs[1], config.tau)
    cluster = cluster_contrastive_loss(ps[0], ps[1], config.tau_c, config.entropy_weight)
    return {"loss": instance + config.cluster_weight * cluster, "instance": instance.detach(),
            "cluster": cluster.detach()}


def validate(inputs: Inputs, config: Config, num_clusters: int) -> None:
    check_common(inputs, config)


def build(setup: Setup) -> Plan:
    config: Config = setup.config
    view = global_view(config, setup.size, setup.channels)
    model = two_head_model(setup)
    return Plan(model, [Stage("cluster", [view, view], two_head_step(lambda hs, ps: cc_loss(hs, ps, config)))])


def run(ctx: RunContext) -> Prediction:
    return train(ctx, build)
