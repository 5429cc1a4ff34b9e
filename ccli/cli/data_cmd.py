"""`ccli data ls|info`: the dataset kinds, and what a spec resolves to before a long run."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ccli.cli.common import JsonOpt, QuietOpt, SplitOpt, emit_json, setup


def register(app: typer.Typer) -> None:
    data_app = typer.Typer(
        help="List dataset kinds; check what a dataset spec loads.",
        no_args_is_help=True,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    data_app.command("ls", help="List the dataset kinds of the spec grammar (kind or kind:PATH).")(ls)
    data_app.command(
        "info", help="Load a dataset spec and show its size, image shape and classes. Example: ccli data info digits"
    )(info)
    app.add_typer(data_app, name="data")


def ls(json_out: JsonOpt = False) -> None:
    setup()
    from rich.table import Table

    from ccli.data.sources import DATASET_KINDS

    if json_out:
        emit_json(dict(DATASET_KINDS))
        return
    table = Table(show_header=True)
    table.add_column("kind")
    table.add_column("what")
    for kind, description in DATASET_KINDS.items():
        table.add_row(kind if kind == "digits" else f"{kind}:PATH", description)
    from ccli.cli.common import table_console

    table_console().print(table)  # stdout: `ccli data ls | grep …`


def info(
    spec: Annotated[str, typer.Argument(help="Dataset spec, e.g. digits or fashion-mnist:/usr/share/datasets/fashion-mnist.")],
    split: SplitOpt = "all",
    image_size: Annotated[Optional[int], typer.Option("--image-size", help="Resize to this square size.")] = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    setup(quiet)
    from ccli import log
    from ccli.data.sources import load_dataset
    from ccli.data.summary import dataset_summary

    ds = load_dataset(spec, split=split, image_size=image_size)
    summary = dataset_summary(ds)
    counts = summary["class_sizes"]
    if json_out:
        emit_json(summary)
        return
    h, w, c = ds.images.shape[1:]
    channels = f"{c} channel{'s' if c != 1 else ''} ({summary['colour']})"
    log.info(f"{ds.spec} (split {ds.split}): {len(ds):,} images of {h}×{w}, {channels}, "
             f"{ds.num_classes or 0} classes, {summary['labelled']:,} labelled")
    if ds.class_names and len(counts):
        pairs = ", ".join(f"{name} {n:,}" for name, n in zip(ds.class_names, counts))
        log.info(f"classes: {pairs}")
    log.info(f"fingerprint: {ds.fingerprint}")
