"""`ccli presets ls [METHOD]` and `ccli presets show NAME`: the preset catalogue."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ccli.cli.common import JsonOpt, QuietOpt, emit_json, setup

presets_app = typer.Typer(
    name="presets",
    help="Every preset with its method, dataset, sources and the paper's numbers.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(presets_app, name="presets")


def _scores(entry: dict) -> str:
    return " ".join(f"{k.upper()} {entry[k]:.3f}" for k in ("acc", "nmi", "ari") if entry.get(k) is not None)


@presets_app.command("ls", help="List presets (of one method when given). Example: ccli presets ls cc")
def ls_command(
    method: Annotated[Optional[str], typer.Argument(help="Only this method's presets.")] = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    setup(quiet)
    from rich.table import Table

    from ccli import log
    from ccli.presets import all_presets

    infos = all_presets(method)
    if json_out:
        emit_json([info.as_json() for info in infos])
        return
    table = Table(title="ccli presets", title_justify="left")
    for name in ("preset", "method", "dataset", "values", "sourced", "PROPOSED", "paper numbers"):
        table.add_column(name)
    for info in infos:
        paper = "; ".join(f"{e['table']}: {_scores(e)}" for e in info.paper_results) or "—"
        table.add_row(info.full_name, info.method, info.dataset or "—", str(len(info.lines)), str(info.sourced),
                      str(info.proposed), paper)
    log.console().print(table)
    for info in infos:
        typer.echo(info.full_name)


@presets_app.command("show", help="Show one preset (METHOD/NAME, or NAME for every method's). Example: ccli presets show cc/cifar10")
def show_command(
    name: Annotated[str, typer.Argument(help="METHOD/NAME, or a bare NAME.")],
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    setup(quiet)
    from rich.table import Table

    from ccli import log
    from ccli.presets import find_presets

    infos = find_presets(name)
    if json_out:
        emit_json([info.as_json() for info in infos])
        return
    for info in infos:
        table = Table(title=f"{info.full_name} ({info.path}; dataset {info.dataset or '—'})", title_justify="left")
        for column in ("key", "value", "source"):
            table.add_column(column)
        for line in info.lines:
            table.add_row(line.key, line.value, line.comment or "(no source)")
        log.console().print(table)
        for entry in info.paper_results:
            log.console().print(f"paper: {entry['table']} on {entry['dataset']}: {_scores(entry)}")
        typer.echo(str(info.path))
