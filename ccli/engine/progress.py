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


class StepProgress:
    """A bar for one long step (`neighbors`, `kmeans`): on a terminal only, nothing when piped or -q.

    `with StepProgress("k-means", total) as p: p.update(done)` — `update` takes the absolute count,
    so it can be handed to library code as a `progress(done, total)` callback.
    """

    def __init__(self, description: str, total: int, enabled: bool | None = None):
        from ccli import log

        if enabled is None:
            enabled = log.verbosity() >= 1 and log.console().is_terminal
        self.enabled, self.description, self.total = enabled, description, total
        self._progress = self._task = None

    def __enter__(self):
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            from ccli import log

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeRemainingColumn(), console=log.console(), transient=True)
            self._progress.__enter__()
            self._task = self._progress.add_task(self.description, total=self.total)
        return self

    def update(self, done: int, total: int | None = None) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=done, **({"total": total} if total else {}))

    def __exit__(self, *exc):
        if self._progress is not None:
            with contextlib.suppress(Exception):
                self._progress.__exit__(*exc)
        return False
