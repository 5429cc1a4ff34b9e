"""`ccli import`: another tool's features (.npy/.npz/.h5/.csv) → a features artifact."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ccli.cli.common import CacheDirOpt, ForceOpt, JsonOpt, OutOpt, QuietOpt, VerboseOpt, emit_json, emit_path, setup


def register(app: typer.Typer) -> None:
    app.command(
        "import",
        help=(
            "Turn features made elsewhere into a features artifact: a 2-D .npy, an .npz (array "
            "'features' or its only array, optional 'labels', 'ids', 'class_names'), an HDF5 file with a "
            "'features' dataset, or a CSV of numbers (optional header; a non-numeric first column is "
            "the sample ids). Rows are copied in blocks, so any N fits. The key is a hash of the content: "
            "a re-import is a cache hit. Commands that take features also accept these files directly. "
            "Example: F=$(ccli import feats.npy --labels labels.csv)"
        ),
    )(import_command)


def import_command(
    source: Annotated[Path, typer.Argument(metavar="FILE", help="Features: .npy, .npz, .h5 or .csv/.tsv.")],
    labels: Annotated[Optional[Path], typer.Option("--labels", "-l", metavar="FILE",
                                                  help="True labels: one per row (.npy/.txt/.csv; integers or class names, -1 = unknown) or an id,label CSV.")] = None,
    names: Annotated[Optional[str], typer.Option("--names", metavar="FILE|A,B,…",
                                                help="Class names of integer labels (label i is the i-th): a file, one per line, or a comma list.")] = None,
    ids: Annotated[Optional[Path], typer.Option("--ids", metavar="FILE", help="Sample ids (e.g. image file names), one per line.")] = None,
    dtype: Annotated[str, typer.Option("--dtype", metavar="float32|float16", help="Storage type of the features.")] = "float32",
    out: OutOpt = None,
    cache_dir: CacheDirOpt = None,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    setup(quiet, verbose)
    from ccli import log
    from ccli.metrics.inputs import parse_names
    from ccli.store.imports import import_features

    path, hit = import_features(source, labels=labels, names=parse_names(names), ids=ids, dtype=dtype, out=out,
                                cache_dir=cache_dir, force=force)
    if hit:
        log.info(f"cache hit: {path}")
    if json_out:
        emit_json({"features": str(path), "cached": hit})
    else:
        emit_path(path)
