"""`ccli report`: one table and a few plots over several runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from ccli.cli.common import JsonOpt, QuietOpt, emit_json, emit_path, setup


def register(app: typer.Typer) -> None:
    app.command(
        "report",
        help=(
            "Compare runs: report.md and report.html with a score table, training curves and "
            "confusion matrices. Example: ccli report runs/cc-digits runs/dcacn-digits -o report/"
        ),
    )(report_command)


def report_command(
    runs: Annotated[List[Path], typer.Argument(help="Run folders (from ccli train) or predictions.h5 files.")],
    out: Annotated[Optional[Path], typer.Option("-o", "--out", help="Report folder [default: ./ccli-report].")] = None,
    title: Annotated[str, typer.Option("--title", help="Report title.")] = "ccli report",
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    setup(quiet)
    from ccli.errors import BadInput
    from ccli.report import collect_run, write_report

    out_dir = Path(out) if out else Path("ccli-report")
    if out_dir.exists() and not out_dir.is_dir():
        raise BadInput(f"--out {out_dir} is a file; give a folder for the report.")
    summaries = [collect_run(Path(ref)) for ref in runs]  # every input checked before writing
    names = [s.name for s in summaries]
    for i, summary in enumerate(summaries):
        if names.count(summary.name) > 1:
            summary.name = f"{summary.name}#{i + 1}"
    path = write_report(summaries, out_dir, title)
    if json_out:
        emit_json([
            {"name": s.name, "path": s.path, "method": s.method, "data": s.data, "num_clusters": s.num_clusters,
             "n": s.n, "scores": s.scores, "epochs": len(s.epochs), "train_seconds": s.train_seconds}
            for s in summaries
        ])
    else:
        emit_path(path)
