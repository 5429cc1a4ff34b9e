"""SCAN's clustering step (Van Gansbeke et al., ECCV 2020) on plain top-q neighbours: the scan+ baseline.

`--neighbors` is any `ccli neighbors` artifact (SCAN mines plain top-k on the pretext
features); `--checkpoint` a `ccli pretrain` checkpoint. With neither, the preset's
`pretrain_preset` recipe is pretrained, its backbone features embedded and the top-q
neighbours mined (`k = num_neighbors`), all through the cache. The clustering step,
multiple heads with lowest-loss selection and the optional self-labelling stage are the
family's (ccli.methods.scan_heads); this module adds only the neighbours it mines.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ccli.methods.registry import Inputs, Prediction, RunContext
from ccli.methods.scan_heads import ChainSpec, ScanConfig, chain_keys, check_scan, run_scan


@dataclass
class Config(ScanConfig):
    """SCAN's defaults (ccli.methods.scan_heads.ScanConfig)."""


def mining(config: Config):
    """Plain top-q cosine neighbours of the backbone features (SCAN's `memory.mine_nearest_neighbors`)."""
    from ccli.neighbors.config import NeighborsConfig

    return NeighborsConfig(k=config.num_neighbors)


def validate(inputs: Inputs, config: Config, num_clusters: int) -> None:
    check_scan(inputs, config, num_clusters)


def key_inputs(inputs: Inputs, config: Config) -> list[str]:
    from ccli.neighbors.config import keyed_config

    return chain_keys(inputs, config, {**keyed_config(asdict(mining(config))), "layer": config.embed_layer})


def run(ctx: RunContext) -> Prediction:
    spec = ChainSpec(mining(ctx.config))
    return run_scan(ctx, spec)
