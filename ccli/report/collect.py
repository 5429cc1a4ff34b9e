"""Gather what a report shows from run folders (or bare predictions artifacts).

A run folder is what `ccli train` writes: config.yaml, metrics.jsonl, predictions.h5 and,
when labels were known, scores.json. Scores are recomputed from predictions.h5 whenever it
carries true labels, so a report never repeats a stale number.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ccli.errors import BadInput

SCORE_KEYS = ("acc", "nmi", "ari", "precision", "recall", "f1")


@dataclass
class RunSummary:
    name: str
    path: Path
    method: str
    data: str
    num_clusters: int
    n: int
    scores: dict[str, float] | None
    epochs: list[dict[str, Any]] = field(default_factory=list)  # per-epoch metrics.jsonl records
    contingency: np.ndarray | None = None  # [classes, clusters], columns in Hungarian order

    @property
    def train_seconds(self) -> float | None:
        times = [r["epoch_time_s"] for r in self.epochs if isinstance(r.get("epoch_time_s"), (int, float))]
        return float(sum(times)) if times else None


def _predictions_path(ref: Path) -> Path:
    if ref.is_dir():
        candidate = ref / "predictions.h5"
        if not candidate.is_file():
            raise BadInput(f"{ref} is not a run folder: it has no predictions.h5 (made by ccli train).")
        return candidate
    if not ref.exists():
        raise BadInput(f"{ref} does not exist.")
    return ref


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    records = []
    if not path.is_file():
        return records
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise BadInput(f"{path} line {number} is not valid JSON ({exc.msg}).") from exc
    return records


def collect_run(ref: Path) -> RunSummary:
    from ccli.metrics.clustering import clustering_scores, contingency, hungarian_accuracy
    from ccli.store import open_artifact

    predictions = _predictions_path(Path(ref))
    with open_artifact(predictions, "predictions") as art:
        labels = art.read("labels")
        targets = art.read("targets") if "targets" in art else None
        config = art.config
        method = art.attr("method") or config.get("method", "?")
        k = int(art.attr("num_clusters") or len(np.unique(labels)))
    inputs = config.get("inputs", {}) if isinstance(config, dict) else {}
    data = str(inputs.get("data") or inputs.get("features") or "?")
    run_dir = predictions.parent
    records = _read_jsonl(run_dir / "metrics.jsonl")
    epochs = [r for r in records if not r.get("final")]
    scores = None
    table = None
    if targets is not None and (targets >= 0).any():
        known = targets >= 0
        scores = {k_: v for k_, v in clustering_scores(targets[known], labels[known]).items() if k_ in SCORE_KEYS}
        c = contingency(targets[known], labels[known])
        _, mapping = hungarian_accuracy(c)
        table = _hungarian_ordered(c, mapping)
    name = run_dir.name if predictions.name == "predictions.h5" else predictions.stem
    return RunSummary(name, run_dir, str(method), data, k, int(len(labels)), scores, epochs, table)


def _hungarian_ordered(c, mapping: dict[int, int]) -> np.ndarray:
    """Columns reordered so matched clusters sit on the diagonal (unmatched ones at the end)."""
    class_pos = {int(v): i for i, v in enumerate(c.classes)}
    cluster_pos = {int(v): j for j, v in enumerate(c.clusters)}
    matched = sorted(mapping.items(), key=lambda item: class_pos[item[1]])
    order = [cluster_pos[cluster] for cluster, _ in matched]
    order += [j for j in range(len(c.clusters)) if j not in set(order)]
    return c.table[:, order]
