"""The report's figures: each returns PNG bytes, or None when the run has nothing to show.

Scores per dataset, training curves, the Hungarian-ordered confusion matrix, a 2-D map of the
features and a grid of thumbnails per cluster; `build_figures` makes them all for a report.
matplotlib (Agg) is imported only here, and only when a figure is drawn, so a JSON-only report
never loads it.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import numpy as np

from ccli import log
from ccli.report.collect import EPOCH_SCORE_KEYS, RunSummary, cluster_order, read_features, read_labels_probs
from ccli.report.tables import Row

MAPS = ("pca", "tsne")
MAP_SAMPLE = 2000  # points on the 2-D map
THUMBS_PER_CLUSTER = 10
MAX_THUMB_CLUSTERS = 30


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def plot_scores(rows: list[Row], dataset: str) -> bytes | None:
    scored = [r for r in rows if r.mean]
    if not scored:
        return None
    plt = _pyplot()
    metrics = ("acc", "nmi", "ari")
    width = 0.8 / len(scored)
    fig, ax = plt.subplots(figsize=(max(5, 1.5 + 1.2 * len(scored)), 3.8))
    x = np.arange(len(metrics))
    for i, row in enumerate(scored):
        bars = ax.bar(x + i * width - 0.4 + width / 2, [row.mean[m] for m in metrics], width,
                      yerr=[row.std[m] for m in metrics], capsize=3, label=row.label)
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks(x, [m.upper() for m in metrics])
    ax.set(ylim=(0, 1.08), title=f"Scores on {dataset} (mean ± std over seeds)")
    ax.legend(fontsize=8)
    return _png(fig)


def plot_training_curves(run: RunSummary) -> bytes | None:
    """Loss per epoch (label-free) and the per-epoch ACC/NMI/ARI metrics.jsonl holds; stages follow each other."""
    if not any("loss" in e for e in run.epochs):
        return None
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    x = np.arange(1, len(run.epochs) + 1)
    scored = [k for k in EPOCH_SCORE_KEYS if any(k in e for e in run.epochs)]
    panels = 1 + bool(scored) + any("knn_acc" in e for e in run.epochs)
    fig, axes = plt.subplots(1, panels, figsize=(4.6 * panels, 3.4), squeeze=False)
    ax = axes[0, 0]
    points = [(i, e["loss"]) for i, e in zip(x, run.epochs) if "loss" in e]
    ax.plot(*zip(*points), marker=".", markersize=3)
    stages = [(i, e.get("stage")) for i, e in zip(x, run.epochs)]
    for (i, stage), (_, before) in zip(stages[1:], stages[:-1]):
        if stage != before:
            for a in axes[0]:
                a.axvline(i - 0.5, color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="epoch", ylabel="training loss", title="Loss (label-free)")
    panel = 1
    if scored:
        ax = axes[0, panel]
        for key, style in zip(scored, ("-", "--", ":")):
            points = [(i, e[key]) for i, e in zip(x, run.epochs) if key in e]
            ax.plot(*zip(*points), style, marker="o", markersize=3, label=key.upper())
        ax.set(xlabel="epoch", ylabel="score", ylim=(0, 1.02), title="Cluster scores per epoch (uses labels)")
        ax.legend(fontsize=8)
        panel += 1
    if panel < panels:
        ax = axes[0, panel]
        points = [(i, e["knn_acc"]) for i, e in zip(x, run.epochs) if "knn_acc" in e]
        ax.plot(*zip(*points), marker="o", markersize=3)
        ax.set(xlabel="epoch", ylabel="kNN accuracy", title="kNN monitor (uses labels)")
    for a in axes[0]:
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(run.name, fontsize=9)
    return _png(fig)


def class_labels(run: RunSummary, class_names: list[str] | None) -> list[str]:
    """The confusion matrix's row labels: each row's class name (its label value when names are unknown)."""
    return [class_names[int(v)] if class_names and 0 <= int(v) < len(class_names) else str(int(v))
            for v in run.classes]


def plot_confusion(run: RunSummary, class_names: list[str] | None) -> bytes | None:
    if run.contingency is None:
        return None
    plt = _pyplot()
    table = run.contingency.astype(float)
    share = table / np.maximum(table.sum(axis=1, keepdims=True), 1)
    rows, cols = table.shape
    fig, ax = plt.subplots(figsize=(min(14, 2.5 + 0.45 * cols), min(14, 1.8 + 0.4 * rows)))
    image = ax.imshow(share, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    names = class_labels(run, class_names)
    if rows <= 40:
        ax.set_yticks(range(rows), names, fontsize=7 if rows > 12 else 9)
    if cols <= 40:
        ax.set_xticks(range(cols), [str(int(v)) for v in run.clusters], fontsize=7 if cols > 12 else 9)
    if rows * cols <= 225:
        for i in range(rows):
            for j in range(cols):
                if table[i, j]:
                    ax.text(j, i, f"{int(table[i, j])}", ha="center", va="center", fontsize=6,
                            color="black" if share[i, j] > 0.5 else "white")
    ax.set(xlabel="cluster (Hungarian order: matched cluster on the diagonal)", ylabel="class",
           title=f"Confusion: {run.name}")
    ax.title.set_fontsize(9)
    fig.colorbar(image, ax=ax, label="share of the class")
    return _png(fig)


def embed_2d(x: np.ndarray, method: str, seed: int = 0) -> np.ndarray:
    """2-D coordinates of the rows of x: PCA (via SVD), or scikit-learn's t-SNE."""
    x = x - x.mean(axis=0, keepdims=True)
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30, max(2, (len(x) - 1) // 3)))
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    coords = x @ vt[:2].T
    return coords if coords.shape[1] == 2 else np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))


def plot_map(run: RunSummary, method: str) -> bytes | None:
    features, what = read_features(run)
    if features is None:
        return None
    labels, _ = read_labels_probs(run)
    if len(features) != len(labels):
        return None
    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(len(labels), size=min(MAP_SAMPLE, len(labels)), replace=False))
    coords = embed_2d(features[sample], method)
    plt = _pyplot()
    order = cluster_order(run, labels)
    colour_of = {c: i for i, c in enumerate(order)}
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    cmap = plt.get_cmap("tab20" if len(order) > 10 else "tab10")
    colours = [cmap(colour_of[int(v)] % cmap.N) for v in labels[sample]]
    ax.scatter(coords[:, 0], coords[:, 1], c=colours, s=6, linewidths=0)
    ax.set(xticks=[], yticks=[], title=f"{'PCA' if method == 'pca' else 't-SNE'} of {len(sample):,} {what}, by cluster")
    ax.title.set_fontsize(9)
    if len(order) <= 20:
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], marker="o", linestyle="", color=cmap(i % cmap.N), label=str(c))
                   for i, c in enumerate(order)]
        ax.legend(handles=handles, fontsize=6, loc="center left", bbox_to_anchor=(1, 0.5), title="cluster",
                  title_fontsize=7)
    return _png(fig)


def thumbnail_mosaic(images: np.ndarray, labels: np.ndarray, order: list[int], per_cluster: int,
                     seed: int = 0) -> tuple[np.ndarray, list[int]]:
    """One uint8 RGB mosaic: a row of up to `per_cluster` random members per cluster (in `order`), 2-px white
    gutters; small images are enlarged (nearest) to at least 32 px, large ones subsampled to at most 64 px.
    Returns the mosaic and each row's member count."""
    rng = np.random.default_rng(seed)
    side = images.shape[1]
    step = max(1, -(-side // 64))
    scale = max(1, -(-32 // (side // step + (side % step > 0))))
    sample = images[:1, ::step, ::step]
    tile = sample.shape[1] * scale
    gap = 2
    mosaic = np.full((len(order) * (tile + gap) + gap, per_cluster * (tile + gap) + gap, 3), 255, dtype=np.uint8)
    counts = []
    for r, cluster in enumerate(order):
        members = np.flatnonzero(labels == cluster)
        counts.append(len(members))
        chosen = np.sort(rng.choice(members, size=min(per_cluster, len(members)), replace=False)) if len(members) else []
        for c, index in enumerate(chosen):
            image = images[index, ::step, ::step]
            image = np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)
            if image.shape[-1] == 1:
                image = np.repeat(image, 3, axis=-1)
            y, x = gap + r * (tile + gap), gap + c * (tile + gap)
            mosaic[y:y + image.shape[0], x:x + image.shape[1]] = image
    return mosaic, counts


def plot_thumbnails(run: RunSummary, images: np.ndarray | None) -> bytes | None:
    """Up to THUMBS_PER_CLUSTER random images of each cluster, one row per cluster (Hungarian order)."""
    if images is None:
        return None
    labels, _ = read_labels_probs(run)
    if len(images) != len(labels):
        return None
    order = cluster_order(run, labels)[:MAX_THUMB_CLUSTERS]
    mosaic, counts = thumbnail_mosaic(images, labels, order, THUMBS_PER_CLUSTER)
    plt = _pyplot()
    height, width = mosaic.shape[:2]
    fig, ax = plt.subplots(figsize=(1.2 + width / 60, 0.6 + height / 60))
    ax.imshow(mosaic, interpolation="nearest")
    row = (height - 2) / max(1, len(order))
    ax.set_yticks([2 + row * (i + 0.5) for i in range(len(order))],
                  [f"cluster {c} ({n})" for c, n in zip(order, counts)], fontsize=7)
    ax.set_xticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(f"Samples per cluster: {run.name}", fontsize=9)
    return _png(fig)


@dataclass
class Figure:
    caption: str
    filename: str
    png: bytes
    section: str  # the dataset or run it belongs to


def _load_images(run: RunSummary, loaded: dict) -> tuple[np.ndarray | None, list[str] | None]:
    """The run's images and class names (cached per spec); none when its data cannot be loaded here."""
    key = (run.data, run.split)
    if key not in loaded:
        loaded[key] = (None, None)
        if run.data != "?" and not run.data.endswith(".h5"):
            try:
                from ccli.data.sources import load_dataset

                ds = load_dataset(run.data, split=run.split or "all")
                loaded[key] = (ds.images, ds.class_names)
            except Exception as exc:  # noqa: BLE001 - a report still shows what it can
                log.warn(f"report: no thumbnails or class names for {run.name}: {exc}")
    return loaded[key]


def build_figures(runs: list[RunSummary], tables: dict[str, list[Row]], map_method: str) -> list[Figure]:
    figures: list[Figure] = []
    for dataset, rows in tables.items():
        png = plot_scores(rows, dataset)
        if png:
            figures.append(Figure(f"Scores on {dataset}", f"scores_{len(figures) + 1}_{_safe_name(dataset)[:40]}.png",
                                  png, dataset))
    loaded: dict = {}
    for number, run in enumerate(runs, 1):
        stem = _safe_name(f"{number:02d}_{run.method}" + (f"_seed{run.seed}" if run.seed is not None else ""))
        images, dataset_names = _load_images(run, loaded)
        class_names = run.class_names or dataset_names
        for caption, name, png in (
            ("Training curves", "training", plot_training_curves(run)),
            ("Confusion matrix", "confusion", plot_confusion(run, class_names)),
            (f"{'PCA' if map_method == 'pca' else 't-SNE'} map", "map", plot_map(run, map_method)),
            ("Thumbnails per cluster", "thumbnails", plot_thumbnails(run, images)),
        ):
            if png:
                figures.append(Figure(f"{caption}: {run.name}", f"{name}_{stem}.png", png, run.name))
    return figures
