"""Runs and pretraining checkpoints in the cache (`<cache>/runs/<name>/run.json`), for `cache ls|info`.

A run folder says which command made it and under which key (ccli.methods.runfolder); its
config.yaml says what it was made from. Listing reads those two small text files only, never a
checkpoint, so `ccli cache ls` stays fast with many runs.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path

from ccli.errors import BadInput

RUN_KINDS = ("run", "checkpoint")


@dataclass
class RunEntry:
    path: Path  # the run folder (train) or the checkpoint file (pretrain)
    kind: str  # run | checkpoint
    key: str
    method: str
    made_from: str  # "data=digits checkpoint=…"
    created: str
    finished: bool
    size: int
    details: dict = field(default_factory=dict)


def _yaml(path: Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load(path.read_text()) if path.is_file() else None
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def read_run(folder: Path) -> RunEntry | None:
    """The entry of one run folder, or None when it is not one (no readable run.json)."""
    try:
        marker = json.loads((folder / "run.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(marker, dict):
        return None
    config = _yaml(folder / "config.yaml")
    created = _dt.datetime.fromtimestamp((folder / "run.json").stat().st_mtime, _dt.timezone.utc)
    created_text = created.isoformat(timespec="seconds")
    command = marker.get("command")
    if command == "pretrain":
        checkpoint = folder / "checkpoint.pt"
        made = f"data={config.get('data', '?')}" + (f" split={config['split']}" if config.get("split") not in (None, "all") else "")
        backbone = config.get("backbone", "?")
        return RunEntry(checkpoint, "checkpoint", str(marker.get("key", "")), f"{marker.get('method', '?')}/{backbone}",
                        made, created_text, checkpoint.is_file(), _folder_size(folder),
                        {"folder": str(folder), "config": config})
    inputs = config.get("inputs") if isinstance(config.get("inputs"), dict) else {}
    made = " ".join(f"{'data' if k == 'images' else k}={v}" for k, v in inputs.items()
                    if k != "split" or v != "all") or "?"
    predictions = folder / "predictions.h5"
    scores = {}
    if (folder / "scores.json").is_file():
        try:
            scores = json.loads((folder / "scores.json").read_text())
        except (OSError, json.JSONDecodeError):
            scores = {}
    return RunEntry(folder, "run", str(marker.get("key", "")), str(marker.get("method", config.get("method", "?"))),
                    made, created_text, predictions.is_file(), _folder_size(folder),
                    {"predictions": str(predictions) if predictions.is_file() else None, "scores": scores,
                     "num_clusters": config.get("num_clusters"), "config": config})


def list_runs(root: Path, kind: str | None = None) -> list[RunEntry]:
    """Runs and checkpoints under `<root>/runs`, newest first."""
    folder = Path(root) / "runs"
    entries = []
    if folder.is_dir():
        for sub in folder.iterdir():
            if sub.is_dir():
                entry = read_run(sub)
                if entry is not None and (kind is None or entry.kind == kind):
                    entries.append(entry)
    entries.sort(key=lambda e: e.created, reverse=True)
    return entries


def find_run(root: Path, ref: str) -> RunEntry | None:
    """A run folder, a checkpoint (with its run folder beside it), or a key prefix of a run."""
    path = Path(ref).expanduser()
    if path.is_dir():
        entry = read_run(path)
        if entry is None:
            raise BadInput(f"{path} is a folder but not a ccli run (it has no run.json).")
        return entry
    if path.is_file() and path.suffix == ".pt":
        entry = read_run(path.parent)
        if entry is not None:
            return entry
        return checkpoint_entry(path)
    if path.exists():
        return None
    matches = [e for e in list_runs(root) if e.key.startswith(ref) or e.path.name.startswith(ref)
               or Path(e.details.get("folder", e.path)).name.startswith(ref)]
    if len(matches) > 1:
        raise BadInput(f"key prefix {ref} is ambiguous: it matches {len(matches)} runs in {root}.")
    return matches[0] if matches else None


def checkpoint_entry(path: Path) -> RunEntry:
    """A checkpoint outside a run folder: what its own metadata says."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is bad input here
        raise BadInput(f"{path} is not a readable ccli checkpoint ({type(exc).__name__}).") from exc
    if not isinstance(state, dict) or state.get("format") != "ccli-checkpoint":
        raise BadInput(f"{path} is not a ccli checkpoint.")
    data = state.get("data") if isinstance(state.get("data"), dict) else {}
    backbone = state.get("backbone") if isinstance(state.get("backbone"), dict) else {}
    created = _dt.datetime.fromtimestamp(path.stat().st_mtime, _dt.timezone.utc).isoformat(timespec="seconds")
    key = str(state.get("key", ""))
    marker = path.with_name(path.stem + ".run.json")  # `ccli pretrain -o FILE.pt` writes FILE.run.json
    if not key and marker.is_file():
        try:
            key = str(json.loads(marker.read_text()).get("key", ""))
        except (OSError, json.JSONDecodeError, AttributeError):
            key = ""
    return RunEntry(path, "checkpoint", key, f"{state.get('method', '?')}/{backbone.get('name', '?')}",
                    f"data={data.get('spec', '?')}", created, True, path.stat().st_size,
                    {"backbone": backbone, "epoch": state.get("epoch")})
