"""`ccli report`: tables and figures over several runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from ccli.cli.common import JsonOpt, QuietOpt, emit_json, emit_path, setup

FormatOpt = Annotated[
    Optional[List[str]], typer.Option("--format", help="md (with PNG files), html (one self-contained file) or json; "
                                                       "repeatable [default: md and html].")]
MapOpt = Annotated[str, typer.Option("--map", help="2-D feature map: pca or tsne (scikit-learn, slower).")]


def register(app: typer.Typer) -> None:
    app.command(
        "report",
        help=(
            "Compare runs: per dataset a table of method × ACC NMI ARI P R F (mean ± std over seeds, budget, the "
            "paper's numbers), and per run the confusion matrix, training curves, a feature map and thumbnails per "
            "cluster. Example: ccli report runs/cc-digits runs/dcacn-digits -o report/ --format html"
        ),
    )(report_command)


def check_formats(formats: Optional[List[str]]) -> tuple[str, ...]:
    from ccli.errors import BadInput
    from ccli.report import FORMATS

    chosen = tuple(dict.fromkeys(formats or ("md", "html")))
    for fmt in chosen:
        if fmt not in FORMATS:
            raise BadInput(f"--format {fmt} is not one of {', '.join(FORMATS)}.")
    return chosen


def check_map(map_method: str) -> str:
    from ccli.errors import BadInput
    from ccli.report import MAPS

    if map_method not in MAPS:
        raise BadInput(f"--map {map_method} is not one of {', '.join(MAPS)}.")
    return map_method


def report_command(
    runs: Annotated[List[Path], typer.Argument(help="Run folders (from ccli train), predictions.h5 files, or a folder "
                                                    "of run folders (ccli compare -o DIR).")],
    out: Annotated[Optional[Path], typer.Option("-o", "--out", help="Report folder [default: ./ccli-report].")] = None,
    title: Annotated[str, typer.Option("--title", help="Report title.")] = "ccli report",
    formats: FormatOpt = None,
    map_method: MapOpt = "pca",
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    setup(quiet)
    from ccli.errors import BadInput
    from ccli.report import collect_runs, write_report
    from ccli.report.paper import paper_results_for

    chosen = check_formats(formats)
    check_map(map_method)
    out_dir = Path(out) if out else Path("ccli-report")
    if out_dir.exists() and not out_dir.is_dir():
        raise BadInput(f"--out {out_dir} is a file; give a folder for the report.")
    summaries = collect_runs(runs)  # every input checked before writing
    paths = write_report(summaries, out_dir, title, chosen, map_method, paper_results_for)
    if json_out:
        emit_json([
            {"name": s.name, "path": s.path, "method": s.method, "data": s.data, "seed": s.seed,
             "num_clusters": s.num_clusters, "n": s.n, "scores": s.scores, "epochs": len(s.epochs),
             "train_seconds": s.train_seconds}
            for s in summaries
        ])
    else:
        emit_path(paths[0])
