"""The `ccli` entry point: builds the Typer app and turns exceptions into exit codes.

Each subcommand lives in its own module under ccli/cli/ and exposes `register(app)`. Those
modules import nothing heavy at module level (torch and faiss are imported inside the
command bodies), so `ccli --help`, `ccli eval` and `ccli cache` start quickly.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback

import typer

from ccli import __version__
from ccli.errors import CcliError

# Order here is the order in `ccli --help`: the pipeline's order.
COMMAND_MODULES = (
    "ccli.cli.data_cmd",
    "ccli.cli.import_cmd",
    "ccli.cli.pretrain_cmd",
    "ccli.cli.embed_cmd",
    "ccli.cli.neighbors_cmd",
    "ccli.cli.graph_cmd",
    "ccli.cli.train_cmd",
    "ccli.cli.eval_cmd",
    "ccli.cli.export_cmd",
    "ccli.cli.compare_cmd",
    "ccli.cli.report_cmd",
    "ccli.cli.presets_cmd",
    "ccli.cli.cache_cmd",
    "ccli.cli.completions_cmd",
)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"ccli {__version__}\n")
        raise typer.Exit()


def _command_names(module) -> set[str]:
    """The top-level names (commands and groups) a command module registers."""
    probe = typer.Typer()
    module.register(probe)
    names = {info.name or info.callback.__name__.replace("_", "-") for info in probe.registered_commands}
    names |= {info.name for info in probe.registered_groups if info.name}
    return names


def build_app(command: str | None = None) -> typer.Typer:
    """The app; with `command`, only the module defining it is registered.

    Typer converts every parameter of every registered command (through pydantic adapters)
    when the app runs, so `ccli eval` registering only itself starts several times faster.
    """
    app = typer.Typer(
        name="ccli",
        help="Contrastive deep image clustering: pretrain → embed → neighbors/graph → train → eval → report.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    @app.callback()
    def _root(
        version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
        debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors (anywhere on the line)."),
    ) -> None:
        """Contrastive deep image clustering: pretrain → embed → neighbors/graph → train → eval → report."""

    modules = [importlib.import_module(name) for name in COMMAND_MODULES]
    if command is not None:
        chosen = [m for m in modules if command in _command_names(m)]
        if len(chosen) == 1:
            modules = chosen
    for module in modules:
        module.register(app)
    return app


def _command_of(args: list[str]) -> str | None:
    """The subcommand named on the line (the first word that is not an option), if any."""
    for arg in args:
        if arg in ("-h", "--help", "--version"):
            return None
        if not arg.startswith("-"):
            return arg
    return None


def run(argv: list[str] | None = None) -> None:
    """Console-script entry: run the CLI and exit with 0, 1 (runtime failure) or 2 (bad input)."""
    from ccli import log

    args = list(sys.argv[1:] if argv is None else argv)
    # --debug is honoured wherever it appears, so `ccli eval x --debug` works too.
    debug = "--debug" in args or bool(os.environ.get("CCLI_DEBUG"))
    args = [a for a in args if a != "--debug"]
    try:
        from ccli.cli.common import readable_metavars

        command = typer.main.get_command(build_app(_command_of(args)))
        readable_metavars(command)  # "--epochs N", not "--epochs <int>"
        result = command.main(args=args, prog_name="ccli", standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except CcliError as exc:
        if debug:
            traceback.print_exc()
        if not getattr(exc, "said_elsewhere", False):  # another torchrun rank printed this failure
            log.error(str(exc).replace("\n", " "))
        code = exc.exit_code
    except MemoryError as exc:
        if debug:
            traceback.print_exc()
        log.error(f"out of memory ({exc}).")
        code = 1
    except KeyboardInterrupt:
        log.error("interrupted.")
        code = 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
        # Typer ships its own copy of Click in recent versions, so its exceptions are
        # recognised by shape rather than by class: usage errors can show() themselves,
        # Exit/Abort carry an exit code or are named so.
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            # A usage error (unknown option, a value of the wrong type): one line, like every
            # other bad input, naming the command whose --help explains it.
            ctx = getattr(exc, "ctx", None)
            where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            log.error(f"{_sentence(exc.format_message())}{where}.")
            sys.exit(exc.exit_code)
        if type(exc).__name__ == "Exit" and hasattr(exc, "exit_code"):
            sys.exit(exc.exit_code)
        if type(exc).__name__ == "Abort":
            log.error("aborted.")
            sys.exit(130)
        if debug:
            traceback.print_exc()
        from ccli.store.space import is_no_space

        if is_no_space(exc):
            where = f" writing {exc.filename}" if isinstance(exc, OSError) and exc.filename else ""
            log.error(f"no space left on device{where}; free some space (e.g. `ccli cache gc`) and rerun.")
        elif isinstance(exc, OSError) and exc.strerror:
            where = f" ({exc.filename})" if exc.filename else ""
            log.error(f"{exc.strerror}{where}.")
        else:
            text = " ".join(str(exc).split())
            log.error(f"unexpected {type(exc).__name__}: {text} (rerun with --debug for the traceback).")
        code = 1
    sys.exit(code)


def _sentence(text: str) -> str:
    """A message on one line, ending without a full stop (the caller adds the ending)."""
    return " ".join(str(text).split()).rstrip(".")
