"""The report's tables: one row per method and dataset (mean ± std over seeds), and one per run.

Every format (Markdown, HTML, JSON) and the scores figure read the same Row objects, so a
number cannot differ between the report's table and its bar chart or its JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ccli.report.collect import SCORE_KEYS, RunSummary

HEADERS = ("run", "method", "data", "seed", "K", "N", "ACC", "NMI", "ARI", "P", "R", "F", "epochs", "train time",
           "device")
SUMMARY_HEADERS = ("method", "runs", "ACC", "NMI", "ARI", "P", "R", "F", "epochs", "train time / run", "device")


def _fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


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
