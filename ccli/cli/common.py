"""Options shared by the subcommands, and the helpers that print results.

Every command takes the same spelling of the same option (DESIGN.md, "Command line"); the
`Annotated` aliases below are the one definition of each.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, List, Optional

import typer

from ccli.jsonable import json_default

QuietOpt = Annotated[bool, typer.Option("-q", "--quiet", help="Only errors on stderr.")]
VerboseOpt = Annotated[bool, typer.Option("-v", "--verbose", help="More detail on stderr.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a machine-readable result on stdout.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Recompute even if the result is cached.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
PresetOpt = Annotated[
    Optional[str], typer.Option("--preset", help="Preset name under presets/<method>/ or a YAML file.")
]
SetOpt = Annotated[
    Optional[List[str]], typer.Option("--set", metavar="KEY=VALUE", help="Override one config key: key=value (repeatable).")
]
CacheDirOpt = Annotated[
    Optional[Path],
    # $CCLI_CACHE is read by ccli.store.cache_root, not here: an explicit --cache-dir that does not
    # exist is a typo the read-only cache commands refuse, an unset-up $CCLI_CACHE an empty cache.
    typer.Option("--cache-dir", help="Artifact cache folder [env CCLI_CACHE; default ~/.cache/ccli]."),
]
OutOpt = Annotated[Optional[Path], typer.Option("-o", "--out", help="Output file (default: the cache).")]
DataOpt = Annotated[str, typer.Option("--data", metavar="SPEC", help="Dataset spec, e.g. digits, fashion-mnist:DIR, cifar10:DIR.")]
SplitOpt = Annotated[str, typer.Option("--split", help="train, test or all (papers use all = train+test).")]


def setup(quiet: bool = False, verbose: bool = False) -> None:
    from ccli import log

    log.set_verbosity(quiet, verbose)


def _is_main_process() -> bool:
    """Under torchrun every rank runs the command; only rank 0 speaks on stdout."""
    return os.environ.get("RANK", "0") == "0"


def emit_path(path: Path | str) -> None:
    """The one line a successful command prints on stdout: what it produced."""
    if not _is_main_process():
        return
    sys.stdout.write(f"{path}\n")
    sys.stdout.flush()


def emit_json(payload: Any) -> None:
    if not _is_main_process():
        return
    sys.stdout.write(json.dumps(payload, indent=2, sort_keys=False, default=json_default) + "\n")
    sys.stdout.flush()


def table_console():
    """A rich console on stdout for list commands' tables, so `ccli cache ls | grep …` works."""
    from rich.console import Console

    console = Console(file=sys.stdout, highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, 160)  # piped: do not cut rows at 80 columns
    return console


def readable_metavars(command) -> None:
    """Give every option without an explicit metavar a readable one ("--data DATA", "--epochs N",
    "--out PATH") instead of Typer's "<str>", "<int>", "<list[str]>"."""
    for param in getattr(command, "params", ()):
        if getattr(param, "param_type_name", "") != "option" or getattr(param, "is_flag", False):
            continue
        if getattr(param, "metavar", None):
            continue
        type_name = type(getattr(param, "type", None)).__name__.lower()
        long_names = [n for n in param.opts if n.startswith("--")]
        if "int" in type_name:
            param.metavar = "N"
        elif "float" in type_name:
            param.metavar = "NUMBER"
        elif "path" in type_name:
            param.metavar = "PATH"
        elif long_names:
            param.metavar = long_names[-1][2:].upper().replace("-", "_")
        else:
            param.metavar = "VALUE"
    for sub in getattr(command, "commands", {}).values():
        readable_metavars(sub)
