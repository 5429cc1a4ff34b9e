"""`ccli completions bash|zsh|fish`: print a static completion script generated from the CLI.

The scripts in completions/ are this command's output; tests/test_completions.py fails when
they no longer match the CLI, so they never go stale silently.
"""

from __future__ import annotations

from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command(
        "completions",
        help="Print a shell completion script. Example: ccli completions bash > ~/.local/share/bash-completion/completions/ccli",
    )(completions)


def completions(shell: Annotated[str, typer.Argument(help="bash, zsh or fish.")]) -> None:
    import sys

    from ccli.cli.completion_scripts import SHELLS, render
    from ccli.errors import BadInput

    if shell not in SHELLS:
        raise BadInput(f"shell '{shell}' is not supported (valid: {', '.join(SHELLS)}).")
    sys.stdout.write(render(shell))
