"""Gather what a report shows from run folders (or bare predictions artifacts).

A run folder is what `ccli train` writes: config.yaml, metrics.jsonl, predictions.h5 and,
when labels were known, scores.json. Scores are recomputed from predictions.h5 whenever it
carries true labels, so a report never repeats a stale number. A folder that holds run folders
(what `ccli compare -o DIR` makes) stands for all of them.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ccli.errors import BadInput

SCORE_KEYS = ("acc", "nmi", "ari", "precision", "recall", "f1")
EPOCH_SCORE_KEYS = ("acc", "nmi", "ari")


@dataclass
class RunSummary:
    name: str
    path: Path
    method: str
    data: str  # the dataset spec (or the features file) the run was made from
    num_clusters: int
    n: int
    scores: dict[str, float] | None
    epochs: list[dict[str, Any]] = field(default_factory=list)  # per-epoch metrics.jsonl records
    contingency: np.ndarray | None = None  # [classes, clusters], columns in Hungarian order
    classes: np.ndarray | None = None  # the class value of each contingency row
    clusters: np.ndarray | None = None  # the cluster id of each contingency column (Hungarian order)
    seed: int | None = None
    split: str = "all"
    created: str = ""  # ISO time the predictions were written
    device: str = ""
    config: dict[str, Any] = field(default_factory=dict)  # the method's config (config.yaml's `config`)
    predictions: Path | None = None
    features: str | None = None  # a features artifact the run clustered, when it names one
    final: dict[str, Any] = field(default_factory=dict)  # the final metrics.jsonl record
    class_names: list[str] | None = None  # label i is class_names[i], when the predictions carry them

    @property
    def train_seconds(self) -> float | None:
        times = [r["epoch_time_s"] for r in self.epochs if isinstance(r.get("epoch_time_s"), (int, float))]
        return float(sum(times)) if times else None

    @property
    def dataset(self) -> str:
        """What separates tables: the data spec and split (runs of different datasets are never mixed)."""
        return self.data if self.split in ("", "all") else f"{self.data} ({self.split})"

    @property
    def dataset_kind(self) -> str | None:
        """The spec's kind (digits, cifar10, …): what a paper's numbers are matched on."""
        from ccli.data.sources import parse_spec

        try:
            return parse_spec(self.data)[0]
        except Exception:  # noqa: BLE001 - a features path or an old spec: no paper numbers
            return None

    @property
    def date(self) -> str:
        try:
            return _dt.datetime.fromisoformat(self.created).strftime("%Y-%m-%d %H:%M")
        except ValueError:
            return ""

    def readable_name(self) -> str:
        """method · dataset · seed · date: what a person recognises, not a hash."""
        parts = [self.method, _short_data(self.data)]
        if self.seed is not None:
            parts.append(f"seed {self.seed}")
        if self.date:
            parts.append(self.date)
        return " · ".join(parts)

    def variant_key(self) -> str:
        """Runs that differ only in their seed share this (they are one row, mean ± std)."""
        from ccli.config import flat_config
        from ccli.engine.loop import is_runtime_key

        config = {k: v for k, v in flat_config(self.config).items() if k != "seed" and not is_runtime_key(k)}
        return json.dumps([self.method, self.dataset, self.num_clusters, config], sort_keys=True, default=str)


def _short_data(spec: str) -> str:
    kind, _, path = spec.partition(":")
    return kind if not path else f"{kind}:{Path(path).name}"


def expand_refs(refs: list[Path]) -> list[Path]:
    """Run folders and predictions files; a folder without predictions.h5 stands for the run folders inside it."""
    out: list[Path] = []
    for ref in refs:
        ref = Path(ref)
        if not ref.exists():
            raise BadInput(f"{ref} does not exist.")
        if ref.is_dir() and not (ref / "predictions.h5").exists():
            # a folder of run folders, or a `ccli compare -o DIR` folder (its runs/ inside)
            inside = sorted({p.parent for pattern in ("*/predictions.h5", "*/*/predictions.h5")
                             for p in ref.glob(pattern)})
            if not inside:
                raise BadInput(f"{ref} is not a run folder: it has no predictions.h5 (made by ccli train) and holds no "
                               "run folders.")
            out.extend(inside)
        else:
            out.append(ref)
    return out


def _predictions_path(ref: Path) -> Path:
    if ref.is_dir():
        candidate = ref / "predictions.h5"
        if not candidate.is_file():
            raise BadInput(f"{ref} is not a run folder: it has no predictions.h5 (made by ccli train).")
        if not (ref / "metrics.jsonl").is_file():
            raise BadInput(f"run folder {ref} has no metrics.jsonl (an unfinished or copied run?).")
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
        record = art.config if isinstance(art.config, dict) else {}
        method = art.attr("method") or record.get("method", "?")
        k = int(art.attr("num_clusters") or len(np.unique(labels)))
        created = art.created
        from ccli.store.sample_ids import read_class_names

        class_names = read_class_names(art)
    inputs = record.get("inputs", {}) if isinstance(record.get("inputs"), dict) else {}
    # Runs store the dataset spec as inputs.images (the input kind); older ones as inputs.data.
    data = str(inputs.get("images") or inputs.get("data") or inputs.get("features") or "?")
    config = record.get("config", {}) if isinstance(record.get("config"), dict) else {}
    run_dir = predictions.parent
    records = _read_jsonl(run_dir / "metrics.jsonl")
    epochs = [r for r in records if not r.get("final")]
    finals = [r for r in records if r.get("final")]
    final = finals[-1] if finals else {}
    scores = table = classes = clusters = None
    if targets is not None and (targets >= 0).any():
        known = targets >= 0
        scores = {k_: v for k_, v in clustering_scores(targets[known], labels[known]).items() if k_ in SCORE_KEYS}
        c = contingency(targets[known], labels[known])
        _, mapping = hungarian_accuracy(c)
        table, order = _hungarian_ordered(c, mapping)
        classes, clusters = np.asarray(c.classes), np.asarray(c.clusters)[order]
    name = run_dir.name if predictions.name == "predictions.h5" else predictions.stem
    engine = config.get("engine", {}) if isinstance(config.get("engine"), dict) else {}
    seed = config.get("seed")
    features = final.get("features") or (str(inputs["features"]) if inputs.get("features") else None)
    return RunSummary(name, run_dir, str(method), data, k, int(len(labels)), scores, epochs, table, classes, clusters,
                      seed=int(seed) if isinstance(seed, (int, float)) else None, split=str(inputs.get("split", "all")),
                      created=created, device=str(engine.get("device", "") or config.get("device", "") or ""),
                      config=config, predictions=predictions, features=features, final=final,
                      class_names=class_names)


def collect_runs(refs: list[Path]) -> list[RunSummary]:
    """Every run of `refs` (folders of runs expanded), each checked before anything is written."""
    runs = [collect_run(ref) for ref in expand_refs(list(refs))]
    names = [r.readable_name() for r in runs]
    for i, run in enumerate(runs):
        run.name = names[i] if names.count(names[i]) == 1 else f"{names[i]} ({run.path.name})"
    return runs


def _hungarian_ordered(c, mapping: dict[int, int]) -> tuple[np.ndarray, list[int]]:
    """Columns reordered so matched clusters sit on the diagonal (unmatched ones at the end)."""
    class_pos = {int(v): i for i, v in enumerate(c.classes)}
    cluster_pos = {int(v): j for j, v in enumerate(c.clusters)}
    matched = sorted(mapping.items(), key=lambda item: class_pos[item[1]])
    order = [cluster_pos[cluster] for cluster, _ in matched]
    order += [j for j in range(len(c.clusters)) if j not in set(order)]
    return c.table[:, order], order


def cluster_order(run: RunSummary, labels: np.ndarray) -> list[int]:
    """Clusters in the confusion matrix's Hungarian order, else by size (largest first)."""
    present = [int(v) for v in np.unique(labels)]
    if run.clusters is not None:
        ordered = [int(v) for v in run.clusters]
        return ordered + [v for v in present if v not in ordered]
    sizes = {v: int((labels == v).sum()) for v in present}
    return sorted(present, key=lambda v: -sizes[v])


def read_labels_probs(run: RunSummary) -> tuple[np.ndarray, np.ndarray | None]:
    from ccli.store import open_artifact

    with open_artifact(run.predictions, "predictions") as art:
        return art.read("labels"), (art.read("probs") if "probs" in art else None)


def read_features(run: RunSummary) -> tuple[np.ndarray | None, str]:
    """(features, what they are) for the map: the run's features artifact, else its soft assignments."""
    from ccli.store import open_artifact

    if run.features and Path(run.features).is_file():
        try:
            with open_artifact(run.features, "features") as art:
                return art.read("features").astype(np.float32), "features"
        except BadInput:
            pass
    _, probs = read_labels_probs(run)
    if probs is not None:
        return probs.astype(np.float32), "soft cluster assignments"
    return None, ""
