"""What `ccli train` writes into a run folder besides the method's own files: config.yaml (the
effective config with its inputs and key), predictions.h5, and the finished-run test a cache hit uses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ccli.methods.registry import Inputs, Prediction


def finished_run(predictions: Path, key: str) -> bool:
    from ccli.store import is_valid_artifact

    return predictions.is_file() and is_valid_artifact(predictions, "predictions", key)


def read_scores(run_dir: Path) -> dict | None:
    path = run_dir / "scores.json"
    return json.loads(path.read_text()) if path.is_file() else None


def effective_config(method: str, config: Any, k: int, inputs: Inputs, key: str) -> dict[str, Any]:
    from ccli.config import config_dict

    return {
        "method": method,
        "key": key,
        "num_clusters": k,
        "inputs": {kind: str(value) for kind, value in inputs.given().items() if value is not None}
        | {"split": inputs.split},
        "config": config_dict(config),
    }


def write_config(path: Path, method: str, config: Any, k: int, inputs: Inputs, key: str) -> None:
    import yaml

    from ccli.store.artifact import _plain

    path.write_text(yaml.safe_dump(_plain(effective_config(method, config, k, inputs, key)), sort_keys=False))


def write_predictions(path: Path, method: str, config: Any, k: int, inputs: Inputs, key: str,
                       prediction: Prediction) -> None:
    from ccli.store import ArtifactWriter
    from ccli.store.sample_ids import write_sample_ids

    n = inputs.num_samples
    labels = np.asarray(prediction.labels, dtype=np.int64)
    if labels.shape != (n,):
        raise ValueError(f"method {method} returned {labels.shape} labels for {n} samples")
    with ArtifactWriter(path, "predictions", key, effective_config(method, config, k, inputs, key),
                        inputs=inputs.keys, attrs={"method": method, "num_clusters": k}) as writer:
        writer.write("labels", labels)
        writer.write("index", inputs.index if inputs.index is not None else np.arange(n, dtype=np.int64))
        if prediction.probs is not None:
            writer.write("probs", np.asarray(prediction.probs, dtype=np.float32))
        if inputs.targets is not None:
            writer.write("targets", np.asarray(inputs.targets, dtype=np.int64))
        write_sample_ids(writer, inputs.ids if inputs.ids is not None and len(inputs.ids) == n else None,
                         inputs.class_names)
