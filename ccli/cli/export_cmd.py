"""`ccli export`: a predictions artifact as one CSV / JSON-lines row per sample."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ccli.cli.common import QuietOpt, emit_path, setup


def register(app: typer.Typer) -> None:
    app.command(
        "export",
        help=(
            "Write one row per sample of a predictions artifact: id (file path relative to the folder "
            "for folder: data, row index otherwise), cluster, confidence (largest probability, when "
            "the method gives them) and the true label and class name when known. Without -o the rows "
            "go to stdout. Example: ccli export run/predictions.h5 -o assignments.csv"
        ),
    )(export_command)


def export_command(
    predictions: Annotated[Path, typer.Argument(metavar="PREDICTIONS", help="Predictions artifact (.h5) from ccli train.")],
    out: Annotated[Optional[Path], typer.Option("-o", "--out", metavar="FILE", help="Output file [default: stdout].")] = None,
    fmt: Annotated[Optional[str], typer.Option("--format", metavar="csv|jsonl", help="Row format [default: from -o's extension, else csv].")] = None,
    quiet: QuietOpt = False,
) -> None:
    setup(quiet)
    from ccli import log
    from ccli.export import export_predictions

    count = export_predictions(predictions, out, fmt)
    if out is not None:
        log.info(f"{count:,} rows")
        emit_path(out)
