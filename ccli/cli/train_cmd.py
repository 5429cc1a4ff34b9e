"""`ccli train --method NAME`: run a clustering method and write its run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ccli.cli.common import (
    CacheDirOpt,
    DeviceOpt,
    ForceOpt,
    JsonOpt,
        QuietOpt,
    SetOpt,
    SplitOpt,
    VerboseOpt,
    emit_json,
    emit_path,
    setup,
)



def _path_option(flag: str, what: str):
    return Annotated[Optional[Path], typer.Option(flag, help=what)]


def register(app: typer.Typer) -> None:
    app.command(
        "train",
        help=(
            "Train a clustering method and write a run folder (config.yaml, checkpoints, metrics.jsonl, "
            "predictions.h5, scores.json). Prints the predictions path, so "
            "`ccli eval \"$(ccli train --method cc --data digits --preset digits)\"` works. "
            "`ccli train --list` shows the methods and the inputs each needs."
        ),
    )(train_command)


def train_command(
    method: Annotated[Optional[str], typer.Option("--method", "-m", help="Method name (see --list).")] = None,
    list_methods: Annotated[bool, typer.Option("--list", help="List the methods and what each needs.")] = False,
    data: Annotated[Optional[str], typer.Option("--data", help="Dataset spec, e.g. digits, fashion-mnist:DIR.")] = None,
    split: SplitOpt = "all",
    checkpoint: _path_option("--checkpoint", "Checkpoint to start the backbone from (ccli pretrain).") = None,
    features: _path_option("--features", "Features artifact (ccli embed or ccli import), or a .npy/.npz/.csv of features.") = None,
    neighbors: _path_option("--neighbors", "Neighbours artifact (ccli neighbors).") = None,
    graph: _path_option("--graph", "Graph artifact (ccli graph).") = None,
    num_clusters: Annotated[
        Optional[int], typer.Option("-k", "--k", "--num-clusters", help="Number of clusters [default: the dataset's classes].")
    ] = None,
    preset: Annotated[Optional[str], typer.Option("--preset", metavar="NAME|auto|FILE", help="Preset under presets/<method>/, a YAML file, or auto (the default without one: sized to the images and device).")] = None,
    sets: SetOpt = None,
    device: DeviceOpt = "auto",
    seed: Annotated[Optional[int], typer.Option("--seed", help="Random seed [default: the preset's].")] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="Training epochs [default: the preset's].")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Batch size [default: the preset's].")] = None,
    image_size: Annotated[Optional[int], typer.Option("--image-size", metavar="PX", help="Side of the training views in pixels [default: the preset's].")] = None,
    out: Annotated[Optional[Path], typer.Option("-o", "--out", help="Run folder [default: <cache>/runs/<method>-<key>].")] = None,
    cache_dir: CacheDirOpt = None,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    setup(quiet, verbose)
    from ccli.devices import check_device

    check_device(device)  # before anything is read from or written to the cache
    from ccli import log
    from ccli.errors import BadInput
    from ccli.methods import registry

    if list_methods:
        rows = registry.listing()
        if json_out:
            emit_json(rows)
        else:
            _print_listing(rows)
        return
    if method is None:
        raise BadInput(f"--method is required (valid: {', '.join(registry.method_names())}).")
    info = registry.get(method)
    inputs = registry.Inputs(data=data, split=split, checkpoint=checkpoint, features=features,
                             neighbors=neighbors, graph=graph)
    # Input kinds are checked before the method's module (and torch) is imported.
    registry.check_inputs(info, inputs.given())
    module = registry.load(info)
    from ccli.auto_preset import resolve as auto_resolve

    options = {"--k": num_clusters, "--seed": seed, "--epochs": epochs, "--batch-size": batch_size,
               "--image-size": image_size}
    preset, sets, chosen = auto_resolve(
        preset, data, split, device, module.Config, method, sets or (),
        {registry.OPTION_KEYS[o]: v for o, v in options.items()}, image_size,
        pretrained=checkpoint is not None or features is not None)
    config = registry.resolve_method_config(module, method, preset, sets, options)
    from ccli.store.imports import ensure_features, plain_features_source_facts

    facts = plain_features_source_facts(features, "--features")
    if facts is not None:  # K is checked against the user's own file before its import is cached
        registry.resolve_num_clusters(getattr(config, "num_clusters", 0), registry.Inputs(
            features=features, num_samples=facts[0], num_classes=facts[1]))
    inputs.features = ensure_features(features, "--features", cache_dir)  # a .npy/.npz/.csv is imported first
    # the auto preset's note is printed once every check has passed: a refused command says one sentence
    result = registry.train(method, inputs, config, out=out, cache_dir=cache_dir, device=device, force=force,
                            announce=(lambda: log.info(chosen)) if chosen else None)
    if result.cached:
        log.info(f"cached run {result.run_dir} (same inputs and config; --force retrains)")
    if json_out:
        emit_json({"run": str(result.run_dir), "predictions": str(result.predictions), "cached": result.cached,
                   "scores": result.scores})
    else:
        emit_path(result.predictions)
    if result.scores is not None and not quiet:
        _print_scores(method, result.scores)
    if not quiet:
        _say_export(result.predictions, data)


def _say_export(predictions, data: str | None) -> None:
    """Where each file's cluster is: the command that writes them as rows (a new user's next step)."""
    import shlex

    from ccli import log

    what, row = ("file", "its path in the folder") if data and data.startswith("folder:") else ("sample", "its id")
    log.info(f"clusters per {what}: ccli export {shlex.quote(str(predictions))} -o clusters.csv "
             f"(one row per {what}: {row} and its cluster)")


def _print_listing(rows: list[dict]) -> None:
    from rich.table import Table

    from ccli.cli.common import table_console

    table = Table(title="ccli train methods", title_justify="left")
    for name in ("method", "needs", "options", "what it does"):
        table.add_column(name)
    for row in rows:
        table.add_row(row["name"], row["needs"], " ".join(row["options"]), row["summary"])
    table_console().print(table)  # stdout: `ccli train --list | grep …`


def _print_scores(method: str, scores: dict) -> None:
    from rich.table import Table

    from ccli import log

    sizes = scores.get("cluster_sizes")
    if sizes:
        log.info(f"{method}: {len(sizes)} clusters, sizes " + ", ".join(f"{k}:{v:,}" for k, v in sizes.items()))
    if "acc" not in scores:
        return
    table = Table(title=f"{method}: final scores", title_justify="left")
    for name in ("N", "clusters", "ACC", "NMI", "ARI", "P", "R", "F"):
        table.add_column(name, justify="right")
    table.add_row(f"{scores['n']:,}", str(scores["n_clusters"]),
                  *(f"{scores[k]:.4f}" for k in ("acc", "nmi", "ari", "precision", "recall", "f1")))
    log.console().print(table)
