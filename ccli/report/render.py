"""Write a report: report.md (+ PNG files), report.html (one self-contained file) or report.json.

What it shows: per dataset one table of method × scores (ACC NMI ARI P R F as mean ± std over
seeds, the budget beside them, the paper's numbers beneath where the dataset matches), a table of
every run, and per run the Hungarian-ordered confusion matrix with class names, the training
curves (loss and the per-epoch ACC/NMI/ARI of metrics.jsonl), a 2-D map of a sample of the
features coloured by cluster (PCA, or t-SNE when asked) and a grid of thumbnails per cluster.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ccli import log
from ccli.report.collect import (EPOCH_SCORE_KEYS, SCORE_KEYS, RunSummary, cluster_order, read_features,
                                 read_labels_probs)

HEADERS = ("run", "method", "data", "seed", "K", "N", "ACC", "NMI", "ARI", "P", "R", "F", "epochs", "train time",
           "device")
SUMMARY_HEADERS = ("method", "runs", "ACC", "NMI", "ARI", "P", "R", "F", "epochs", "train time / run", "device")
FORMATS = ("md", "html", "json")
MAPS = ("pca", "tsne")
MAP_SAMPLE = 2000  # points on the 2-D map
THUMBS_PER_CLUSTER = 10
MAX_THUMB_CLUSTERS = 30


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")


def _fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


# ------------------------------------------------------------------------------------------
# Tables
# ------------------------------------------------------------------------------------------
@dataclass
class Row:
    """One method (one config) on one dataset: the mean ± std of its seeds."""

    method: str
    dataset: str
    runs: list[RunSummary]
    mean: dict[str, float] = field(default_factory=dict)
    std: dict[str, float] = field(default_factory=dict)
    label: str = ""
    paper: list[dict[str, Any]] = field(default_factory=list)

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.runs if r.seed is not None]

    @property
    def epochs(self) -> float | None:
        counts = [len(r.epochs) for r in self.runs if r.epochs]
        return float(np.mean(counts)) if counts else None

    @property
    def seconds(self) -> float | None:
        times = [r.train_seconds for r in self.runs if r.train_seconds is not None]
        return float(np.mean(times)) if times else None

    @property
    def device(self) -> str:
        return ", ".join(sorted({r.device for r in self.runs if r.device})) or "—"


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single run)."""
    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


def summary_rows(runs: list[RunSummary], paper_lookup: Callable[[str, str | None], list] | None = None
                 ) -> dict[str, list[Row]]:
    """Rows per dataset (in first-seen order); runs differing only in their seed share a row."""
    tables: dict[str, dict[str, Row]] = {}
    for run in runs:
        rows = tables.setdefault(run.dataset, {})
        key = run.variant_key()
        if key not in rows:
            rows[key] = Row(run.method, run.dataset, [])
        rows[key].runs.append(run)
    out: dict[str, list[Row]] = {}
    for dataset, rows in tables.items():
        listed = list(rows.values())
        for row in listed:
            scored = [r.scores for r in row.runs if r.scores]
            for key in SCORE_KEYS:
                if scored:
                    row.mean[key], row.std[key] = mean_std([s[key] for s in scored])
            same = [r for r in listed if r.method == row.method]
            row.label = row.method if len(same) == 1 else f"{row.method} (variant {same.index(row) + 1})"
            if paper_lookup is not None:
                row.paper = paper_lookup(row.method, row.runs[0].dataset_kind)
        out[dataset] = listed
    return out


def _cell(row: Row, key: str) -> str:
    if key not in row.mean:
        return "—"
    scored = sum(1 for r in row.runs if r.scores)
    return f"{row.mean[key]:.4f} ± {row.std[key]:.4f}" if scored > 1 else f"{row.mean[key]:.4f}"


def summary_cells(row: Row) -> list[str]:
    epochs = row.epochs
    return [row.label, f"{len(row.runs)} (seeds {', '.join(map(str, row.seeds))})" if row.seeds else str(len(row.runs)),
            *(_cell(row, k) for k in SCORE_KEYS), "—" if epochs is None else f"{epochs:g}", _fmt_seconds(row.seconds),
            row.device]


def paper_cells(row: Row, entry: dict[str, Any]) -> list[str]:
    scores = [f"{entry[k]:.4f}" if entry.get(k) is not None else "—" for k in ("acc", "nmi", "ari")]
    return [f"{row.method}: paper ({entry['table']})", "—", *scores, "—", "—", "—", "—", "—", "—"]


def table_rows(runs: list[RunSummary]) -> list[list[str]]:
    rows = []
    for run in runs:
        scores = [f"{run.scores[k]:.4f}" if run.scores else "—" for k in SCORE_KEYS]
        rows.append([run.name, run.method, run.dataset, "—" if run.seed is None else str(run.seed),
                     str(run.num_clusters), f"{run.n:,}", *scores, str(len(run.epochs)) if run.epochs else "—",
                     _fmt_seconds(run.train_seconds), run.device or "—"])
    return rows


# ------------------------------------------------------------------------------------------
# Figures (each returns PNG bytes, or None when the run has nothing to show)
# ------------------------------------------------------------------------------------------
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


# ------------------------------------------------------------------------------------------
# The report
# ------------------------------------------------------------------------------------------
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


def _json_payload(runs, tables, title, created) -> dict[str, Any]:
    return {
        "title": title,
        "created": created,
        "tables": [
            {"dataset": dataset, "rows": [
                {"method": row.method, "label": row.label, "runs": [str(r.path) for r in row.runs], "seeds": row.seeds,
                 "mean": row.mean, "std": row.std, "epochs": row.epochs, "train_seconds": row.seconds,
                 "device": row.device, "paper": row.paper}
                for row in rows]}
            for dataset, rows in tables.items()
        ],
        "runs": [
            {"name": r.name, "path": str(r.path), "method": r.method, "data": r.data, "split": r.split, "seed": r.seed,
             "num_clusters": r.num_clusters, "n": r.n, "scores": r.scores, "epochs": len(r.epochs),
             "train_seconds": r.train_seconds, "device": r.device, "created": r.created}
            for r in runs
        ],
    }


NOTE = ("ACC: Hungarian-matched accuracy; P/R/F: size-weighted precision, recall and F of each cluster's majority "
        "class; mean ± sample standard deviation over the seeds. Scores are recomputed from each run's "
        "predictions.h5. Budget: epochs and training wall time per run (pretraining not included), device as "
        "configured. Paper rows: the numbers the method's paper reports on that dataset (its preset's "
        "paper_results), with the table they come from.")


def write_report(runs: list[RunSummary], out_dir: Path, title: str, formats: tuple[str, ...] = ("md", "html"),
                 map_method: str = "pca", paper_lookup: Callable | None = None) -> list[Path]:
    """Write the report in each format into out_dir; return the written report files in `formats` order."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = summary_rows(runs, paper_lookup)
    created = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    figures = build_figures(runs, tables, map_method) if {"md", "html"} & set(formats) else []
    written = []
    for fmt in formats:
        if fmt == "json":
            path = out_dir / "report.json"
            path.write_text(json.dumps(_json_payload(runs, tables, title, created), indent=2, default=str) + "\n")
        elif fmt == "md":
            for figure in figures:
                (out_dir / figure.filename).write_bytes(figure.png)
            path = out_dir / "report.md"
            path.write_text(_markdown(runs, tables, figures, title, created))
        else:
            path = out_dir / "report.html"
            path.write_text(_html(runs, tables, figures, title, created))
        written.append(path)
    return written


def _md_table(headers, rows) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return lines + ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]


def _markdown(runs, tables, figures, title, created) -> str:
    md = [f"# {title}", "", f"Generated by ccli on {created}.", ""]
    for dataset, rows in tables.items():
        body = []
        for row in rows:
            body.append(summary_cells(row))
            body.extend(paper_cells(row, entry) for entry in row.paper)
        md += [f"## {dataset}", "", *_md_table(SUMMARY_HEADERS, body), ""]
        md += [f"![{f.caption}]({f.filename})" for f in figures if f.section == dataset] + [""]
    md += [NOTE, "", "## Runs", "", *_md_table(HEADERS, table_rows(runs)), ""]
    for run in runs:
        md += [f"### {run.name}", "", f"Folder: `{run.path}`", ""]
        md += [f"![{f.caption}]({f.filename})" for f in figures if f.section == run.name] + [""]
    return "\n".join(md)


def _html_table(headers, rows, paper_from: set[int] = frozenset()) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        f"<tr{' class=paper' if i in paper_from else ''}>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row)
        + "</tr>" for i, row in enumerate(rows))
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(figure: Figure) -> str:
    data = base64.b64encode(figure.png).decode("ascii")
    return (f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(figure.caption)}'>"
            f"<figcaption>{html.escape(figure.caption)}</figcaption></figure>")


def _html(runs, tables, figures, title, created) -> str:
    """One file: styles inline, every image a data: URI, no script, nothing fetched."""
    parts = [f"<h1>{html.escape(title)}</h1><p>Generated by ccli on {html.escape(created)}.</p>"]
    for dataset, rows in tables.items():
        body, paper_rows = [], set()
        for row in rows:
            body.append(summary_cells(row))
            for entry in row.paper:
                paper_rows.add(len(body))
                body.append(paper_cells(row, entry))
        parts.append(f"<h2>{html.escape(dataset)}</h2>" + _html_table(SUMMARY_HEADERS, body, paper_rows))
        parts.extend(_img(f) for f in figures if f.section == dataset)
    parts.append(f"<p class=note>{html.escape(NOTE)}</p><h2>Runs</h2>" + _html_table(HEADERS, table_rows(runs)))
    for run in runs:
        parts.append(f"<h3>{html.escape(run.name)}</h3><p class=note>Folder: {html.escape(str(run.path))}</p>")
        parts.extend(_img(f) for f in figures if f.section == run.name)
    style = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:1300px}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}"
             "td:first-child,th:first-child{text-align:left}tr.paper td{color:#555;font-style:italic}"
             "img{max-width:100%}figure{margin:1em 0}.note{color:#555;font-size:90%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
