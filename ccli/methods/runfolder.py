"""The run-folder protocol `ccli train` and `ccli pretrain` share: a folder never loses data.

A run folder records which command made it and under which content key, in `run.json` (for a
`-o FILE.pt` pretraining, `FILE.run.json` beside the checkpoint). A command then

- continues its own run (same command, same key): a finished one is a cache hit, an unfinished
  one resumes from its checkpoints (the one resume rule of both commands: automatic);
- refuses, before writing anything, a folder made by another command or under another key, or
  a non-empty folder that is not a ccli run, unless `force` — and even then removes only the
  files ccli itself writes there, never one of the run's own inputs (a `--checkpoint` that
  lives in the same folder survives);
- holds a lock on the key while it trains, so a second identical command waits and then reuses
  the first one's result instead of interleaving its metrics.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ccli.errors import BadInput

MARKER = "run.json"


@dataclass(frozen=True)
class RunFolder:
    """Where a run lives: its folder, its marker, and the names of the files it writes there."""

    folder: Path
    marker: Path
    files: tuple[str, ...]  # names (globs) in `folder` that belong to the run
    option: str = "--out"  # how the user named the folder, for messages

    def owned(self) -> list[Path]:
        found: list[Path] = []
        for pattern in self.files:
            found.extend(sorted(self.folder.glob(pattern)))
        return found


def read_marker(marker: Path) -> dict | None:
    try:
        data = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def check_claim(run: RunFolder, command: str, key: str, force: bool) -> str:
    """'new', 'same' (continue or reuse) or 'replace' (force); BadInput when the folder is another's."""
    folder = run.folder
    if folder.exists() and not folder.is_dir():
        raise BadInput(f"{run.option} {folder} is a file; give a folder for the run.")
    marker = read_marker(run.marker) if run.marker.is_file() else None
    if marker is not None:
        if marker.get("command") == command and marker.get("key") == key:
            return "same"
        if force:
            return "replace"
        if marker.get("command") != command:
            raise BadInput(f"{run.option} {folder} holds a `ccli {marker.get('command')}` run; pick another folder "
                           "(or --force to replace its files).")
        raise BadInput(f"{run.option} {folder} holds a different {command} run (key {str(marker.get('key'))[:12]}…); "
                       "pick another folder (or --force to replace it).")
    present = [p for p in run.owned() if p.exists()]
    if not present:
        return "new"
    if force:
        return "replace"
    raise BadInput(f"{run.option} {folder} already holds {present[0].name}, which is not from this run; pick another "
                   "folder (or --force to replace it).")


def clear(run: RunFolder, keep: Iterable[Path | str | None] = ()) -> None:
    """Remove the files the run writes, except the run's inputs (paths in `keep`)."""
    kept = {Path(p).resolve() for p in keep if p is not None}
    for path in run.owned():
        if path.resolve() not in kept and path.is_file():
            path.unlink()
    run.marker.unlink(missing_ok=True)


def write_marker(run: RunFolder, command: str, key: str, **details) -> None:
    run.folder.mkdir(parents=True, exist_ok=True)
    tmp = run.marker.with_name(f".{run.marker.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps({"command": command, "key": key, **details}, indent=2, default=str) + "\n")
    tmp.replace(run.marker)
