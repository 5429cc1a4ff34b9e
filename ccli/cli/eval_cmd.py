"""`ccli eval`: score predicted cluster labels against true labels."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ccli.cli.common import JsonOpt, QuietOpt, VerboseOpt, emit_json, setup


def register(app: typer.Typer) -> None:
    app.command(
        "eval",
        help=(
            "Score predictions against labels: ACC (Hungarian), NMI, ARI and weighted P/R/F.\n\n"
            "PREDICTIONS is a predictions artifact (.h5; its true labels are used when it carries "
            "them) or a .npy/.txt/.csv file of cluster ids (a 2-D .npy of probabilities is "
            "argmax'ed). Example: ccli eval run/predictions.h5 --json"
        ),
    )(eval_command)


def eval_command(
    predictions: Annotated[Path, typer.Argument(help="Predictions artifact (.h5) or .npy/.txt/.csv file.")],
    labels: Annotated[
        Optional[Path],
        typer.Option("--labels", "-l", help="True labels: .npy/.txt/.csv, or an artifact carrying labels."),
    ] = None,
    pairwise: Annotated[bool, typer.Option("--pairwise", help="Also report pair-counting P/R/F.")] = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    setup(quiet, verbose)
    from ccli import log
    from ccli.errors import BadInput
    from ccli.metrics.clustering import clustering_scores
    from ccli.metrics.inputs import read_labels, read_predictions

    predicted, targets = read_predictions(predictions)
    if labels is not None:
        targets = read_labels(labels)
        source = str(labels)
    elif targets is None:
        raise BadInput(f"{predictions} carries no true labels; give them with --labels FILE.")
    else:
        source = f"{predictions} (targets)"
    if len(predicted) != len(targets):
        raise BadInput(
            f"{predictions} has {len(predicted):,} predictions but {source} has {len(targets):,} labels."
        )
    scored = slice(None)
    if labels is None and (targets < 0).any():
        # Inside an artifact, -1 marks an unknown label (e.g. STL-10's unlabeled split).
        scored = targets >= 0
        log.warn(f"{int((~scored).sum()):,} samples have no known label and are not scored.")
    scores = clustering_scores(targets[scored], predicted[scored], pairwise=pairwise)
    scores = {"predictions": str(predictions), "labels": source, **scores}
    if json_out:
        emit_json(scores)
    if not quiet:
        _print_table(scores)


def _print_table(scores: dict) -> None:
    from rich.table import Table

    from ccli import log

    table = Table(title=f"{scores['predictions']}", title_justify="left")
    for name in ("N", "classes", "clusters", "ACC", "NMI", "ARI", "P", "R", "F"):
        table.add_column(name, justify="right")
    table.add_row(
        f"{scores['n']:,}",
        str(scores["n_classes"]),
        str(scores["n_clusters"]),
        *(f"{scores[k]:.4f}" for k in ("acc", "nmi", "ari", "precision", "recall", "f1")),
    )
    log.console().print(table)
    if "pairwise" in scores:
        pw = scores["pairwise"]
        log.console().print(
            f"pairwise  P {pw['precision']:.4f}  R {pw['recall']:.4f}  F {pw['f1']:.4f}"
        )
