"""`ccli export`: one row per sample of a predictions artifact, as CSV or JSON lines.

Columns: id (the sample's file path for folder datasets, its row index otherwise), cluster,
confidence (the largest cluster probability, when the method gives probabilities), and, when
the artifact knows them, the true label and its class name (empty for unknown, -1, labels).
"""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path
from typing import IO, Iterator

import numpy as np

from ccli.errors import BadInput

FORMATS = ("csv", "jsonl")


def export_format(out: Path | None, fmt: str | None) -> str:
    if fmt is not None:
        if fmt not in FORMATS:
            raise BadInput(f"--format {fmt} is not one of {', '.join(FORMATS)}.")
        return fmt
    if out is not None and out.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    return "csv"


def prediction_rows(path: Path) -> tuple[list[str], Iterator[dict]]:
    """(column names, rows) of a predictions artifact; everything is checked before the first row."""
    from ccli.metrics.inputs import read_predictions_table

    table = read_predictions_table(path)
    columns = ["id", "cluster"]
    if table.probs is not None:
        columns.append("confidence")
    labelled = table.targets is not None and (table.targets >= 0).any()
    if labelled:
        columns.append("label")
        if table.class_names is not None:
            columns.append("class")
    confidence = table.probs.max(axis=1) if table.probs is not None else None

    def rows():
        for i, sample in enumerate(table.ids):
            row = {"id": sample, "cluster": int(table.labels[i])}
            if confidence is not None:
                row["confidence"] = round(float(confidence[i]), 6)
            if labelled:
                t = int(table.targets[i])
                row["label"] = t if t >= 0 else None
                if table.class_names is not None:
                    row["class"] = table.class_names[t] if 0 <= t < len(table.class_names) else None
            yield row

    return columns, rows()


def write_rows(columns: list[str], rows: Iterator[dict], fmt: str, fh: IO[str]) -> int:
    count = 0
    if fmt == "csv":
        writer = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
            count += 1
    else:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
            count += 1
    return count


def export_predictions(path: Path, out: Path | None = None, fmt: str | None = None) -> int:
    """Write the rows to `out` (atomically) or stdout; returns the number of rows."""
    fmt = export_format(out, fmt)
    columns, rows = prediction_rows(Path(path))
    if out is None:
        return write_rows(columns, rows, fmt, sys.stdout)
    out = Path(out).expanduser()
    if out.is_dir():
        raise BadInput(f"--out {out} is a directory; give a file name such as {out / ('predictions.' + fmt)}.")
    if not out.parent.is_dir():
        raise BadInput(f"--out {out}: folder {out.parent} does not exist.")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            count = write_rows(columns, rows, fmt, fh)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return count
