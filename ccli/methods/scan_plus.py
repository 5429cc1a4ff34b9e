"""scan+ stage 3 (seed 004, scanplus.md §6): SCAN's clustering step on the multi-view neighbour set.

The clustering step is SCAN's, unchanged (the paper's "SCAN-loss", §6.2; ccli.methods.scan_heads);
what makes scan+ is its inputs: the stage-1 MoBY backbone (`ccli pretrain --method moby`) and the
neighbours of the 4q → 2q → q cascade over clean, strong and weak views (`ccli neighbors
--multi-view`, §5). A `--neighbors` artifact without the cascade's steps is refused. With no
inputs the preset's chain runs through the cache: pretrain → `embed --views clean,weak,strong`
→ `neighbors --multi-view`. Self-labelling is off by default: the paper has none (A17).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from ccli.errors import BadInput
from ccli.methods.registry import Inputs, Prediction, RunContext
from ccli.methods.scan_heads import ChainSpec, ScanConfig, chain_keys, check_scan, run_scan


@dataclass
class Config(ScanConfig):
    # the cascade of the chain (ccli.neighbors.config.NeighborsConfig; scanplus.md §5.3)
    mine_mult1: int = 4
    mine_mult2: int = 2
    mine_strong_mode: Literal["both", "anchor_only"] = "both"
    mine_strong_draws: int = 1
    mine_filter_head: Literal["scan_warmup", "kmeans"] = "scan_warmup"
    mine_filter_score: Literal["dot", "anchor_class", "confidence"] = "dot"


def mining(config: Config, num_clusters: int = 0):
    from ccli.neighbors.config import NeighborsConfig

    return NeighborsConfig(k=config.num_neighbors, multi_view=True, mult1=config.mine_mult1, mult2=config.mine_mult2,
                           clusters=num_clusters, strong_mode=config.mine_strong_mode,
                           strong_draws=config.mine_strong_draws, filter_head=config.mine_filter_head,
                           filter_score=config.mine_filter_score, seed=config.seed)


def check_multi_view(path) -> None:
    """A scan+ neighbours artifact must come from the cascade (it records its steps)."""
    from ccli.store import open_artifact

    with open_artifact(path, "neighbors", what="--neighbors") as art:
        multi = bool(art.attr("multi_view", False)) and "steps" in art
    if not multi:
        raise BadInput(f"--neighbors {path} has no multi-view steps: scan+ needs the 4q → 2q → q cascade; "
                       "make it with `ccli neighbors --multi-view`.")


def validate(inputs: Inputs, config: Config, num_clusters: int) -> None:
    if inputs.neighbors is not None:
        check_multi_view(inputs.neighbors)
    elif config.mine_mult1 * config.num_neighbors >= inputs.num_samples:
        raise BadInput(f"the cascade searches mine_mult1·num_neighbors = {config.mine_mult1 * config.num_neighbors} "
                       f"candidates, not fewer than the {inputs.num_samples:,} images; lower num_neighbors.")
    check_scan(inputs, config, num_clusters)


def key_inputs(inputs: Inputs, config: Config) -> list[str]:
    from ccli.neighbors.config import keyed_config

    return chain_keys(inputs, config, {**keyed_config(asdict(mining(config))), "layer": config.embed_layer})


def run(ctx: RunContext) -> Prediction:
    config: Config = ctx.config
    spec = ChainSpec(mining(config, ctx.num_clusters), views="clean,weak,strong", draws=config.mine_strong_draws)
    return run_scan(ctx, spec)
