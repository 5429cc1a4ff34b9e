"""The papers' reported numbers, read from the presets' `paper_results:` blocks.

A preset may carry `paper_results:` (a mapping or a list of mappings with table, dataset, acc,
nmi, ari as fractions); ccli.config keeps it out of every config. The report puts these numbers
beside ours when the dataset matches, with the table they come from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ccli.config import available_presets, preset_metadata
from ccli.errors import BadInput

PAPER_SCORE_KEYS = ("acc", "nmi", "ari")


def paper_results_of(group: str, name: str, path: Path | str) -> list[dict[str, Any]]:
    """The checked paper_results entries of one preset (empty when it has none)."""
    raw = preset_metadata(group, name).get("paper_results")
    if raw is None:
        return []
    entries = raw if isinstance(raw, list) else [raw]
    results = []
    for entry in entries:
        if not isinstance(entry, dict) or not entry.get("table") or not entry.get("dataset"):
            raise BadInput(f"{path}: each paper_results entry must be a mapping with at least table and dataset.")
        for score in PAPER_SCORE_KEYS:
            value = entry.get(score)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not 0 <= value <= 1):
                raise BadInput(f"{path}: paper_results {score}={value!r} must be a fraction between 0 and 1.")
        results.append(dict(entry))
    return results


def paper_results_for(method: str, dataset: str | None) -> list[dict[str, Any]]:
    """What any preset of `method` reports for `dataset` (deduplicated, in preset order)."""
    if not dataset:
        return []
    seen, out = set(), []
    for name in available_presets(method):
        for entry in paper_results_of(method, name, f"presets/{method}/{name}.yaml"):
            if entry.get("dataset") != dataset:
                continue
            ident = (entry.get("table"), *(entry.get(k) for k in PAPER_SCORE_KEYS))
            if ident not in seen:
                seen.add(ident)
                out.append(entry)
    return out
