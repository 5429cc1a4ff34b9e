"""`ccli compare`: several methods and seeds on one dataset, sharing every common stage, then the report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ccli.cli.common import (CacheDirOpt, DataOpt, DeviceOpt, ForceOpt, JsonOpt, PresetOpt, QuietOpt, SplitOpt,
                             VerboseOpt, emit_json, emit_path, setup)
from ccli.cli.report_cmd import FormatOpt, MapOpt, check_formats, check_map


def register(app: typer.Typer) -> None:
    app.command(
        "compare",
        help=(
            "Train each method (and seed) through its chain, sharing pretrainings, embeddings and neighbours through "
            "the cache, then write one report; prints the report's path. A finished run is reused, so adding a method "
            "trains only that one. Example: ccli compare --data digits --methods kmeans,cc,dcacn --seeds 2 -o cmp/"
        ),
    )(compare_command)


def compare_command(
    data: DataOpt = "digits",
    methods: Annotated[str, typer.Option("--methods", help="Comma-separated methods (see ccli train --list).")] = "",
    seeds: Annotated[int, typer.Option("--seeds", help="Seeds per method: the preset's seed, +1, +2, …")] = 1,
    preset: PresetOpt = None,
    pretrain: Annotated[Optional[str], typer.Option(
        "--pretrain", help="Pretraining recipe (<method>-<name>, e.g. simclr-digits) for methods that need features, "
                           "neighbours or a graph [default: a method's own pretrain_preset, else simclr-<dataset>].")
    ] = None,
    split: SplitOpt = "all",
    out: Annotated[Path, typer.Option("-o", "--out", help="Folder for the runs (runs/) and the report.")] = Path(
        "ccli-compare"),
    formats: FormatOpt = None,
    map_method: MapOpt = "pca",
    title: Annotated[Optional[str], typer.Option("--title", help="Report title.")] = None,
    device: DeviceOpt = "auto",
    cache_dir: CacheDirOpt = None,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    setup(quiet, verbose)
    from ccli.compare import compare, parse_methods

    chosen = check_formats(formats or ["html", "md"])
    check_map(map_method)
    result = compare(data, parse_methods(methods), Path(out), seeds=seeds, preset=preset, pretrain=pretrain,
                     split=split, cache_dir=cache_dir, device=device, force=force, formats=chosen,
                     map_method=map_method, title=title)
    if json_out:
        emit_json({"report": result.reports, "runs": [
            {"method": r.method, "seed": r.seed, "run": r.run_dir, "predictions": r.predictions, "cached": r.cached,
             "scores": r.scores, "seconds": r.seconds} for r in result.runs], "shared": result.shared})
    else:
        emit_path(result.reports[0])
