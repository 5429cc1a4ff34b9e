"""The training engine shared by every method (see `ccli.engine.loop` for the contract).

Public API:

- `fit(task, data, cfg, files, config_record=…, checkpoint_extra=…, resume=…, monitor=…)`, `check_resume`
- `Task`, `EngineConfig`, `StepContext`, `RunFiles`, `FitResult`, `config_differences`
- data paths: `make_data_path`, `DeviceDataPath`, `LoaderDataPath`, `mix_seed`
- `resolve_device`, `autocast_dtype`, `autocast`
- `build_optimizer`, `LARS`, `lr_at`
- `save_atomic`, `load_checkpoint`, `file_identity`
- DDP: `init_distributed`, `DistContext`, `all_gather_cat`, `shutdown`
- `KnnMonitor`, `knn_accuracy`

Imports are lazy (PEP 562) so `import ccli.engine` does not import torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "fit": "loop", "Task": "loop", "EngineConfig": "loop", "StepContext": "loop", "RunFiles": "loop",
    "FitResult": "loop", "config_differences": "loop", "RUNTIME_KEYS": "loop",
    "make_data_path": "datapath", "DeviceDataPath": "datapath", "LoaderDataPath": "datapath", "mix_seed": "datapath",
    "resolve_device": "device", "autocast_dtype": "device", "autocast": "device",
    "build_optimizer": "optim", "LARS": "optim", "lr_at": "schedule",
    "check_resume": "loop", "save_atomic": "checkpoint", "load_checkpoint": "checkpoint", "file_identity": "checkpoint",
    "init_distributed": "ddp", "DistContext": "ddp", "all_gather_cat": "ddp", "shutdown": "ddp",
    "KnnMonitor": "monitor", "knn_accuracy": "monitor",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"ccli.engine.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'ccli.engine' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
