"""`ccli cache ls|info|verify|gc`: look after the artifact store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from ccli.cli.common import CacheDirOpt, JsonOpt, QuietOpt, emit_json, setup

KindOpt = Annotated[Optional[str], typer.Option("--kind", metavar="KIND",
                                                help="features, neighbors, graph, predictions, run or checkpoint.")]


def register(app: typer.Typer) -> None:
    cache_app = typer.Typer(
        help="List, inspect, verify and clean the artifact cache.",
        no_args_is_help=True,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    cache_app.command("ls", help="List cached artifacts, runs and pretraining checkpoints (with what each was made "
                                 "from), newest first; tables go to stdout. Example: ccli cache ls --kind run")(ls)
    cache_app.command("info", help="Show one artifact, run folder or checkpoint: a path, or a key prefix.")(info)
    cache_app.command("verify", help="Check schemas, shapes and checksums; exit 1 if any artifact is damaged.")(verify)
    cache_app.command("gc", help="Remove leftovers, damaged artifacts and (optionally) old or excess ones.")(gc)
    app.add_typer(cache_app, name="cache")


def _check_kind(kind: str | None, runs: bool = False) -> None:
    from ccli.errors import BadInput
    from ccli.store.runs import RUN_KINDS
    from ccli.store.schema import KINDS

    valid = list(KINDS) + (list(RUN_KINDS) if runs else [])
    if kind is not None and kind not in valid:
        raise BadInput(f"--kind {kind} is not an artifact kind (valid: {', '.join(valid)}).")


def _human(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


def ls(kind: KindOpt = None, cache_dir: CacheDirOpt = None, json_out: JsonOpt = False, quiet: QuietOpt = False) -> None:
    setup(quiet)
    from rich.table import Table

    from ccli.cli.common import table_console
    from ccli.store.cache import cache_root, list_entries
    from ccli.store.runs import RUN_KINDS, list_runs

    _check_kind(kind, runs=True)
    root = cache_root(cache_dir)
    entries = [] if kind in RUN_KINDS else list_entries(root, kind)
    runs = list_runs(root, kind) if kind is None or kind in RUN_KINDS else []
    if json_out:
        emit_json(
            [
                {"path": str(e.path), "kind": e.kind, "key": e.key, "bytes": e.size, "created": e.created,
                 "shape": e.shape, "ok": e.ok, "problem": e.problem}
                for e in entries
            ]
            + [
                {"path": str(r.path), "kind": r.kind, "key": r.key, "bytes": r.size, "created": r.created,
                 "method": r.method, "made_from": r.made_from, "finished": r.finished}
                for r in runs
            ]
        )
        return
    out = table_console()
    if entries or not runs:
        table = Table(title=f"{root}  ({len(entries)} artifacts, {_human(sum(e.size for e in entries))})",
                      title_justify="left")
        for column in ("kind", "key", "shape", "size", "created", "status"):
            table.add_column(column)
        for e in entries:
            table.add_row(e.kind, e.key[:12], e.shape, _human(e.size), e.created, "ok" if e.ok else "damaged")
        out.print(table)
    if runs:
        table = Table(title=f"{root / 'runs'}  ({len(runs)} runs and checkpoints)", title_justify="left")
        for column in ("kind", "key", "method", "made from", "size", "created", "status", "path"):
            table.add_column(column, overflow="fold")
        for r in runs:
            table.add_row(r.kind, r.key[:12], r.method, r.made_from, _human(r.size), r.created,
                          "done" if r.finished else "unfinished", str(r.path))
        out.print(table)


def info(
    ref: Annotated[str, typer.Argument(metavar="REF", help="Artifact path, run folder, checkpoint, or a key (prefix).")],
    cache_dir: CacheDirOpt = None,
    json_out: JsonOpt = False,
) -> None:
    setup()
    from ccli import log
    from ccli.errors import BadInput
    from ccli.store import open_artifact
    from ccli.store.cache import cache_root, find_entry
    from ccli.store.runs import find_run

    root = cache_root(cache_dir, must_exist=True)
    run = find_run(root, ref)
    if run is not None:
        _print_run(run, json_out)
        return
    try:
        path = find_entry(root, ref)
    except BadInput as exc:
        raise BadInput(f"{ref} is neither a file nor a key of an artifact or run in the cache {root}.") from exc
    with open_artifact(path) as art:
        described = art.describe()
    attrs, datasets = described["attrs"], described["datasets"]
    if json_out:
        emit_json({"path": str(path), "attrs": attrs, "datasets": datasets})
        return
    out = log.console()
    out.print(f"[bold]{path}[/bold]")
    for key, value in attrs.items():
        if key == "config":
            out.print("config:")
            for line in str(value).rstrip().splitlines():
                out.print(f"    {line}", markup=False)
        else:
            out.print(f"{key}: {value}", markup=False)
    out.print("datasets:")
    for name, meta in datasets.items():
        shape = "×".join(map(str, meta["shape"])) or "scalar"
        out.print(f"    {name}  {shape}  {meta['dtype']}" + (f"  {meta['compression']}" if meta["compression"] else ""))


def _print_run(run, json_out: bool) -> None:
    import yaml

    from ccli import log

    payload = {"path": str(run.path), "kind": run.kind, "key": run.key, "method": run.method,
               "made_from": run.made_from, "created": run.created, "finished": run.finished, "bytes": run.size,
               **{k: v for k, v in run.details.items() if k != "config"}, "config": run.details.get("config")}
    if json_out:
        emit_json(payload)
        return
    out = log.console()
    out.print(f"[bold]{run.path}[/bold]")
    for key in ("kind", "key", "method", "made_from", "created", "finished"):
        out.print(f"{key}: {payload[key]}", markup=False)
    out.print(f"size: {_human(run.size)}")
    scores = run.details.get("scores") or {}
    if "acc" in scores:
        out.print(f"scores: ACC {scores['acc']:.4f}  NMI {scores['nmi']:.4f}  ARI {scores['ari']:.4f}")
    if scores.get("cluster_sizes"):
        out.print("cluster sizes: " + ", ".join(f"{k}:{v}" for k, v in scores["cluster_sizes"].items()), markup=False)
    if payload.get("config"):
        out.print("config:")
        for line in yaml.safe_dump(payload["config"], sort_keys=False).rstrip().splitlines():
            out.print(f"    {line}", markup=False)


def verify(
    refs: Annotated[Optional[List[str]], typer.Argument(help="Paths or keys; default: the whole cache.")] = None,
    cache_dir: CacheDirOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    setup(quiet)
    from ccli import log
    from ccli.store.cache import cache_root, verify_cache, verify_paths

    root = cache_root(cache_dir, must_exist=True)
    report = verify_paths(root, refs) if refs else verify_cache(root)
    if json_out:
        payload = {"checked": report.checked, "damaged": report.damaged}
        if report.leftovers:  # temps of killed writers, stale locks: `gc` removes them
            payload["leftovers"] = [{"path": p, "reason": why} for p, why in report.leftovers]
        emit_json(payload)
    else:
        for path, problems in report.damaged.items():
            log.error(f"{path}: {'; '.join(problems)}")
        if report.leftovers:
            log.warn(f"{len(report.leftovers)} leftover file(s) of killed or finished processes "
                     f"(e.g. {report.leftovers[0][0]}, {report.leftovers[0][1]}); `ccli cache gc` removes them.")
        log.info(f"{report.checked} item(s) checked, {len(report.damaged)} damaged file(s).")
    if report.damaged:
        raise typer.Exit(1)


def gc(
    older_than: Annotated[
        Optional[float], typer.Option("--older-than", help="Also remove artifacts not used for this many days.")
    ] = None,
    max_size: Annotated[
        Optional[str], typer.Option("--max-size", help="Evict least recently used artifacts until the cache is below this size (e.g. 20G, 500M).")
    ] = None,
    kind: KindOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be removed.")] = False,
    cache_dir: CacheDirOpt = None,
    quiet: QuietOpt = False,
) -> None:
    setup(quiet)
    from ccli import log
    from ccli.store.cache import cache_root, plan_gc, remove

    _check_kind(kind)
    limit = _parse_size(max_size) if max_size else None
    if older_than is not None and older_than < 0:
        from ccli.errors import BadInput

        raise BadInput(f"--older-than {older_than} must be a non-negative number of days.")
    root = cache_root(cache_dir, must_exist=True)
    doomed = plan_gc(root, kind=kind, older_than_days=older_than, max_bytes=limit)
    freed = 0
    for path, reason in doomed:
        size = path.stat().st_size if path.exists() else 0
        if not dry_run:
            remove(path)
        freed += size
        log.info(f"{'would remove' if dry_run else 'removed'} {path} ({reason}, {_human(size)})")
        typer.echo(str(path))
    log.info(f"{'would free' if dry_run else 'freed'} {_human(freed)} in {len(doomed)} file(s).")


def _parse_size(text: str) -> int:
    import re

    from ccli.errors import BadInput

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*", text.upper())
    if not match:
        raise BadInput(f"--max-size {text} is not a size such as 500M or 20G.")
    scale = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}[match.group(2)]
    return int(float(match.group(1)) * scale)
