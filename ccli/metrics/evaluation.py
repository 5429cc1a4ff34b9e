"""What `ccli eval` and `ccli train` report about one labelling: the scores on the known labels,
the cluster → class mapping, cluster sizes, and label-free scores when features are at hand.

Labels −1 mean unknown everywhere: those samples are counted and left out of every score,
never scored as an extra class.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ccli.errors import BadInput

MATCHES = ("hungarian", "majority")
SILHOUETTE_SAMPLE = 5000  # silhouette is O(n²): score a seeded sample above this size


def cluster_sizes(predicted: np.ndarray) -> dict[int, int]:
    values, counts = np.unique(np.asarray(predicted), return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts)}


def majority_accuracy(c) -> tuple[float, dict[int, int]]:
    """Many-to-one ACC: every cluster takes its majority class (as SCAN reports over-clustering)."""
    rows = c.table.argmax(axis=0)
    matched = int(c.table[rows, np.arange(c.table.shape[1])].sum())
    mapping = {int(c.clusters[j]): int(c.classes[i]) for j, i in enumerate(rows)}
    return matched / c.n, mapping


def score_labelling(targets: np.ndarray, predicted: np.ndarray, *, match: str = "hungarian",
                    class_names: Sequence[str] | None = None, pairwise: bool = False) -> dict:
    """Scores on the samples with a known label (targets ≥ 0), with the mapping and the counts."""
    from ccli.metrics.clustering import clustering_scores, contingency, hungarian_accuracy

    if match not in MATCHES:
        raise BadInput(f"match {match} is not one of {', '.join(MATCHES)}.")
    targets = np.asarray(targets, dtype=np.int64)
    predicted = np.asarray(predicted, dtype=np.int64)
    known = targets >= 0
    unknown = int((~known).sum())
    if not known.any():
        raise BadInput("no sample has a known label (all labels are -1).")
    scores = clustering_scores(targets[known], predicted[known], pairwise=pairwise)
    c = contingency(targets[known], predicted[known])
    acc, mapping = (hungarian_accuracy if match == "hungarian" else majority_accuracy)(c)
    scores["acc"] = acc
    scores["match"] = match
    scores["unknown_labels"] = unknown
    named = list(class_names) if class_names is not None else None

    def name(value: int):
        return named[value] if named is not None and 0 <= value < len(named) else value

    scores["mapping"] = {str(cluster): name(cls) for cluster, cls in sorted(mapping.items())}
    if named is not None:
        scores["class_names"] = named
    note = over_clustering_note(scores["n_clusters"], scores["n_classes"], match)
    if note:
        scores["note"] = note
    return scores


def over_clustering_note(n_clusters: int, n_classes: int, match: str) -> str | None:
    if match == "hungarian" and n_clusters > n_classes:
        return (f"{n_clusters} clusters for {n_classes} classes: the one-to-one Hungarian match leaves "
                f"{n_clusters - n_classes} clusters unmatched and counts their samples as errors; "
                "--match majority maps every cluster to its majority class (many-to-one).")
    return None


def label_free_scores(features: np.ndarray, predicted: np.ndarray, *, seed: int = 0) -> dict:
    """Silhouette (cosine would need normalised rows; Euclidean as scikit-learn's default, on a
    seeded sample of at most 5,000 points), Calinski–Harabasz and Davies–Bouldin."""
    from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

    x = np.asarray(features, dtype=np.float32)
    k = len(np.unique(predicted))
    if k < 2 or k >= len(x):
        raise BadInput(f"label-free scores need between 2 and N-1 clusters; the predictions have {k}.")
    sample = min(len(x), SILHOUETTE_SAMPLE)
    return {
        "silhouette": float(silhouette_score(x, predicted, sample_size=sample if sample < len(x) else None,
                                             random_state=seed)),
        "silhouette_sample": sample,
        "calinski_harabasz": float(calinski_harabasz_score(x, predicted)),
        "davies_bouldin": float(davies_bouldin_score(x, predicted)),
    }


def run_scores(targets: np.ndarray | None, predicted: np.ndarray, class_names=None) -> dict:
    """What a run's scores.json holds: N, clusters and their sizes always, label scores when known."""
    predicted = np.asarray(predicted, dtype=np.int64)
    sizes = cluster_sizes(predicted)
    out = {"n": int(len(predicted)), "n_clusters": len(sizes), "cluster_sizes": {str(k): v for k, v in sizes.items()}}
    if targets is not None and (np.asarray(targets) >= 0).any():
        scored = score_labelling(targets, predicted, class_names=class_names)
        out = {**scored, "n_predicted": out["n"], "cluster_sizes": out["cluster_sizes"]}
    return out


def _looks_like_spec(text: str) -> bool:
    from ccli.data.sources import DATASET_KINDS

    kind = text.partition(":")[0].strip().lower()
    return kind in DATASET_KINDS


def resolve_targets(labels: str, n: int, ids: list[str], source: str) -> tuple[np.ndarray, list[str] | None, str]:
    """True labels for `n` predictions from --labels: an artifact, a label file / id,label CSV, or a
    dataset spec (its labels, joined by file path when it has them). Returns (targets, names, what)."""
    from pathlib import Path

    from ccli.metrics.inputs import ARTIFACT_SUFFIXES, LabelTable, align_labels, read_label_table, read_labels

    path = Path(labels).expanduser()
    if path.exists() or (not _looks_like_spec(labels) and path.suffix):
        if path.suffix.lower() in ARTIFACT_SUFFIXES:
            from ccli.store import open_artifact
            from ccli.store.sample_ids import read_class_names

            values = read_labels(path)
            with open_artifact(path) as art:
                names = read_class_names(art)
            if len(values) != n:
                raise BadInput(f"{source} has {n:,} predictions but --labels {path} has {len(values):,} labels.")
            return values, names, str(path)
        table = read_label_table(path, "--labels")
        values, names = align_labels(table, ids, n, "--labels", path, source=source)
        return values, names, str(path)
    if not _looks_like_spec(labels):
        raise BadInput(f"--labels {labels} is neither a file nor a dataset spec.")
    from ccli.data.sources import load_dataset

    ds = load_dataset(labels)
    if ds.ids is not None and ids != [str(i) for i in range(n)]:
        table = LabelTable(ds.ids, ds.labels)
        values, _ = align_labels(table, ids, n, "--labels", Path(ds.spec), source=source)
    else:
        if len(ds) != n:
            raise BadInput(f"{source} has {n:,} predictions but --labels {labels} has {len(ds):,} images.")
        values = ds.labels
    return values, ds.class_names, ds.spec


def evaluate(predictions, *, labels: str | None = None, features=None, match: str = "hungarian",
             pairwise: bool = False, cache_dir=None) -> dict:
    """Everything `ccli eval` reports, as a JSON-ready dict (validated before anything is computed)."""
    from pathlib import Path

    from ccli.metrics.inputs import ARTIFACT_SUFFIXES, read_label_file, read_predictions_table

    if match not in MATCHES:
        raise BadInput(f"--match {match} is not one of {', '.join(MATCHES)}.")
    path = Path(predictions)
    if path.suffix.lower() in ARTIFACT_SUFFIXES:
        table = read_predictions_table(path)
        predicted, targets, names, ids = table.labels, table.targets, table.class_names, table.ids
        if targets is not None and not (targets >= 0).any():
            targets = None
    else:
        predicted = read_label_file(path, "", allow_probabilities=True)
        targets, names, ids = None, None, [str(i) for i in range(len(predicted))]
    source_name = f"{path} (targets)"
    if labels is not None:
        targets, label_names, source_name = resolve_targets(labels, len(predicted), ids, str(path))
        names = label_names if label_names is not None else names
    result: dict = {"predictions": str(path)}
    sizes = cluster_sizes(predicted)
    free = None
    if features is not None:
        from ccli.store import open_artifact
        from ccli.store.imports import ensure_features

        fpath = ensure_features(Path(features), "--features", cache_dir)
        with open_artifact(fpath, "features", what="--features") as art:
            if art.shape("features")[0] != len(predicted):
                raise BadInput(f"--features {features} has {art.shape('features')[0]:,} rows but {path} has "
                               f"{len(predicted):,} predictions.")
            x = art.read("features")
        free = label_free_scores(x, predicted)
    if targets is not None:
        result.update({"labels": source_name, **score_labelling(targets, predicted, match=match,
                                                                  class_names=names, pairwise=pairwise)})
    else:
        result.update({"labels": None, "n": int(len(predicted)), "n_clusters": len(sizes)})
    result["cluster_sizes"] = {str(k): v for k, v in sizes.items()}
    if free is not None:
        result["label_free"] = free
    return result
