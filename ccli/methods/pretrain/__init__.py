"""Representation learning (`ccli pretrain`) and feature extraction (`ccli embed`).

Methods
-------
- ``simclr``: backbone → projector MLP, NT-Xent over two views (or multi-crop: global–global
  and global–local pairs, dcacn.md §5.5). Temperature 0.5 by default (CC; SCAN/GCC use 0.1).
- ``moby``: the scan+ stage-1 model (scanplus.md §4): online backbone → projector → predictor,
  target backbone → projector updated as an EMA with momentum rising 0.996 → 1 per step
  (Eq. 8), two FIFO queues of target keys (Q_a of past h_a, Q_b of past h_b; K = 4096), and the
  symmetric InfoNCE of Eq. 9–10 at τ = 0.2 with queue negatives only.

Library entry points (what the CLI and other methods call)
-----------------------------------------------------------
- `PretrainConfig` (the method keys, plus the shared `engine` section of `EngineConfig`).
- `pretrain(config, data_spec, split, out, cache_dir, force) -> PretrainResult` (resumes automatically)
- `load_pretrained(path, expect_backbone=None) -> Pretrained` (backbone, projector, info)
- `embed(checkpoint, data_spec, …) -> (features path, cache hit)`

Checkpoint (a `ccli-checkpoint`, see ccli.engine.checkpoint)
------------------------------------------------------------
Besides the engine's keys (epoch, step, complete, config, model, optimizer, history) it holds
``kind: "pretrain"``, ``method``, ``backbone`` {name, in_channels, image_size, out_dim},
``data`` {spec, split, fingerprint, num_images, num_classes}, ``normalization`` {mean, std},
and ``backbone_prefix`` / ``projector_prefix``: where the backbone's and projector's weights
sit in ``model`` (``backbone.``/``projector.`` for simclr, ``online.backbone.``/
``online.projector.`` for moby).

The package: `config` (PretrainConfig, effective), `models` (heads, views, the method switch),
`simclr` and `moby` (one Task each), `run` (the runner and its run folder), `embed` (reading a
checkpoint back, and `ccli embed`).
"""

from ccli.methods.pretrain.config import AUGMENTS, METHODS, PretrainConfig, effective
from ccli.methods.pretrain.embed import EMBED_VIEWS, Pretrained, embed, load_pretrained, parse_views, view_dataset_names
from ccli.methods.pretrain.models import build_heads, build_task, build_views
from ccli.methods.pretrain.run import PretrainResult, config_record, pretrain, run_key

__all__ = ["AUGMENTS", "METHODS", "PretrainConfig", "effective", "EMBED_VIEWS", "Pretrained", "embed",
           "load_pretrained", "parse_views", "view_dataset_names", "build_heads", "build_task", "build_views",
           "PretrainResult", "config_record", "pretrain", "run_key"]
