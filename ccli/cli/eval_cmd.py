"""`ccli eval`: score predicted cluster labels against true labels (or without them)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ccli.cli.common import CacheDirOpt, JsonOpt, QuietOpt, VerboseOpt, emit_json, setup


def register(app: typer.Typer) -> None:
    app.command(
        "eval",
        help=(
            "Score predictions against labels: ACC (Hungarian, or --match majority), NMI, ARI and weighted "
            "P/R/F. Labels -1 are unknown: counted, never scored.\n\n"
            "PREDICTIONS is a predictions artifact (.h5; its true labels are used when it carries "
            "them) or a .npy/.txt/.csv file of cluster ids (a 2-D .npy of probabilities is "
            "argmax'ed). --labels takes a label file (integers or class names), an id,label CSV "
            "(joined by id, e.g. file names), an artifact, or a dataset spec such as folder:DIR. "
            "Without labels: cluster sizes, and with --features silhouette, Calinski-Harabasz and "
            "Davies-Bouldin. Example: ccli eval run/predictions.h5 --labels labels.csv --json"
        ),
    )(eval_command)


def eval_command(
    predictions: Annotated[Path, typer.Argument(metavar="PREDICTIONS", help="Predictions artifact (.h5) or .npy/.txt/.csv file.")],
    labels: Annotated[
        Optional[str],
        typer.Option("--labels", "-l", metavar="FILE|SPEC",
                     help="True labels: .npy/.txt/.csv (one per row, or id,label), an artifact, or a dataset spec."),
    ] = None,
    features: Annotated[Optional[Path], typer.Option("--features", metavar="FILE",
                                                    help="Features (.h5/.npy/.npz) for label-free scores.")] = None,
    match: Annotated[str, typer.Option("--match", metavar="hungarian|majority",
                                       help="Cluster → class match for ACC: one-to-one, or many-to-one.")] = "hungarian",
    pairwise: Annotated[bool, typer.Option("--pairwise", help="Also report pair-counting P/R/F.")] = False,
    cache_dir: CacheDirOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    setup(quiet, verbose)
    from ccli import log
    from ccli.metrics.evaluation import evaluate

    scores = evaluate(predictions, labels=labels, features=features, match=match, pairwise=pairwise,
                      cache_dir=cache_dir)
    if json_out:
        emit_json(scores)
    if quiet:
        return
    if scores.get("unknown_labels"):
        log.warn(f"{scores['unknown_labels']:,} samples have an unknown label (-1) and are not scored.")
    if "acc" in scores:
        _print_table(scores)
    sizes = scores["cluster_sizes"]
    log.info(f"{len(sizes)} clusters, sizes " + ", ".join(f"{k}:{v:,}" for k, v in sizes.items()))
    if "note" in scores:
        log.warn(scores["note"])
    if "label_free" in scores:
        free = scores["label_free"]
        log.info(f"label-free: silhouette {free['silhouette']:.4f} (sample of {free['silhouette_sample']:,}), "
                 f"Calinski-Harabasz {free['calinski_harabasz']:.1f}, Davies-Bouldin {free['davies_bouldin']:.4f}")
    elif "acc" not in scores:
        log.info("no labels: give --labels FILE|SPEC to score, or --features FILE for label-free scores.")


def _print_table(scores: dict) -> None:
    from rich.table import Table

    from ccli import log

    table = Table(title=f"{scores['predictions']}", title_justify="left")
    acc_name = "ACC" if scores.get("match", "hungarian") == "hungarian" else "ACC (majority)"
    for name in ("N", "classes", "clusters", acc_name, "NMI", "ARI", "P", "R", "F"):
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
        log.console().print(f"pairwise  P {pw['precision']:.4f}  R {pw['recall']:.4f}  F {pw['f1']:.4f}")
    if scores.get("class_names"):
        pairs = ", ".join(f"{cluster}→{cls}" for cluster, cls in scores["mapping"].items())
        log.info(f"cluster → class: {pairs}")
