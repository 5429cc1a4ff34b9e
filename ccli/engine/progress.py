"""Progress on stderr (rich), shown by rank 0 at normal verbosity; silent with -q or on other ranks."""

from __future__ import annotations

import contextlib


class EpochProgress:
    """A per-epoch bar: `with EpochProgress(enabled) as p: p.start(epoch, total, steps); p.advance(loss)`."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._progress = None
        self._task = None

    def __enter__(self):
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            from ccli import log

            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"), TimeRemainingColumn(),
                console=log.console(), transient=True,
            )
            self._progress.__enter__()
        return self

    def start(self, epoch: int, epochs: int, steps: int) -> None:
        if self._progress is not None:
            if self._task is not None:
                self._progress.remove_task(self._task)
            self._task = self._progress.add_task(f"epoch {epoch}/{epochs}", total=steps, loss="…")

    def advance(self, loss: float | None = None) -> None:
        if self._progress is not None and self._task is not None:
            fields = {"loss": f"{loss:.4f}"} if loss is not None else {}
            self._progress.update(self._task, advance=1, **fields)

    def __exit__(self, *exc):
        if self._progress is not None:
            with contextlib.suppress(Exception):
                self._progress.__exit__(*exc)
        return False
