"""Messages for people go to stderr (stdout is reserved for paths and --json).

A single module-level verbosity keeps `-q`/`-v` consistent across commands without
threading a logger through every library call.
"""

from __future__ import annotations

import os
import sys

_verbosity = 1  # 0 quiet, 1 normal, 2 verbose
_console = None


def set_verbosity(quiet: bool = False, verbose: bool = False) -> None:
    global _verbosity
    _verbosity = 0 if quiet else (2 if verbose else 1)
    if os.environ.get("RANK", "0") != "0":
        _verbosity = 0  # under torchrun rank 0 reports for all ranks; the others only print errors


def verbosity() -> int:
    return _verbosity


def console():
    """The shared rich console on stderr (created on first use: rich costs import time)."""
    global _console
    if _console is None:
        from rich.console import Console

        _console = Console(stderr=True, highlight=False)
        if not _console.is_terminal:
            # Redirected stderr (logs, CI): rich would assume 80 columns and cut tables.
            _console.width = max(_console.width, 120)
    return _console


def info(message: str) -> None:
    if _verbosity >= 1:
        console().print(message)


def debug(message: str) -> None:
    if _verbosity >= 2:
        console().print(f"[dim]{message}[/dim]")


def warn(message: str) -> None:
    console().print(f"[yellow]warning:[/yellow] {message}")


def error(message: str) -> None:
    # Plain write, no markup parsing: messages may contain [brackets] from paths.
    sys.stderr.write(f"ccli: error: {message}\n")
    sys.stderr.flush()
