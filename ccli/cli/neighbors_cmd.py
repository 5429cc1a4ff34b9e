"""`ccli neighbors`: top-k neighbours of a features artifact, plain or by the scan+ multi-view cascade."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ccli.cli.common import (
    CacheDirOpt,
    DeviceOpt,
    ForceOpt,
    JsonOpt,
    OutOpt,
    PresetOpt,
    QuietOpt,
    SetOpt,
    VerboseOpt,
    emit_json,
    emit_path,
    setup,
)

HELP = (
    "Top-k neighbours of every point of a features artifact → a neighbors artifact.\n\n"
    "Cosine (default) or L2; self excluded unless --include-self. Backends: faiss (GPU index "
    "when a GPU is present; --index flat|ivf|hnsw) or an exact blocked matmul + top-k in torch; "
    "auto takes faiss for approximate indexes or on a GPU, torch for exact search on a CPU. "
    "--multi-view runs the scan+ cascade (mult1·k clean → mult2·k strong re-rank → k by "
    "weak-view cluster agreement) over the views `ccli embed --views` stored, keeping every "
    "step under steps/. With labels, neighbour purity is reported (stderr; --json on stdout).\n\n"
    "Example: N=$(ccli neighbors features.h5 -k 20)"
)


def register(app: typer.Typer) -> None:
    app.command("neighbors", help=HELP)(neighbors_command)


def neighbors_command(
    features: Annotated[Path, typer.Argument(help="Features artifact (.h5) from `ccli embed`, or a .npy/.npz/.csv of features (imported on the fly).")],
    k: Annotated[Optional[int], typer.Option("-k", "--k", help="Neighbours per point (q for --multi-view). [default: 20]")] = None,
    metric: Annotated[Optional[str], typer.Option("--metric", help="cosine or l2. [default: cosine]")] = None,
    backend: Annotated[Optional[str], typer.Option("--backend", help="auto, faiss or torch. [default: auto]")] = None,
    index: Annotated[Optional[str], typer.Option("--index", help="faiss index: flat (exact), ivf or hnsw. [default: flat]")] = None,
    nlist: Annotated[Optional[int], typer.Option("--nlist", help="IVF lists (0 = 2·√N).")] = None,
    nprobe: Annotated[Optional[int], typer.Option("--nprobe", help="IVF lists probed per query. [default: 16]")] = None,
    hnsw_m: Annotated[Optional[int], typer.Option("--hnsw-m", help="HNSW links per node. [default: 32]")] = None,
    ef_construction: Annotated[Optional[int], typer.Option("--ef-construction", help="HNSW build beam. [default: 40]")] = None,
    ef_search: Annotated[Optional[int], typer.Option("--ef-search", help="HNSW search beam. [default: 64]")] = None,
    include_self: Annotated[Optional[bool], typer.Option("--include-self/--exclude-self", help="List each point as its own neighbour. [default: exclude]")] = None,
    multi_view: Annotated[Optional[bool], typer.Option("--multi-view/--single-view", help="scan+ 4q→2q→q cascade over the stored views.")] = None,
    clusters: Annotated[Optional[int], typer.Option("--clusters", "-C", help="Filter-head clusters (0 = number of known label classes).")] = None,
    filter_head: Annotated[Optional[str], typer.Option("--filter-head", help="scan_warmup or kmeans. [default: scan_warmup]")] = None,
    filter_score: Annotated[Optional[str], typer.Option("--filter-score", help="dot, anchor_class or confidence. [default: dot]")] = None,
    strong_mode: Annotated[Optional[str], typer.Option("--strong-mode", help="both or anchor_only. [default: both]")] = None,
    strong_draws: Annotated[Optional[int], typer.Option("--strong-draws", help="Strong-view draws to average (ccli embed --draws). [default: 1]")] = None,
    mult1: Annotated[Optional[int], typer.Option("--mult1", help="Step-1 candidates = mult1·k. [default: 4]")] = None,
    mult2: Annotated[Optional[int], typer.Option("--mult2", help="Step-2 candidates = mult2·k. [default: 2]")] = None,
    prune: Annotated[Optional[str], typer.Option("--prune", help="Exact torch search on a CPU: score only the k-means lists that can hold a neighbour; auto, on or off (same result). [default: auto]")] = None,
    block_rows: Annotated[int, typer.Option("--block-rows", help="Query rows per search block (0 = automatic, memory-bounded).")] = 0,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Random seed (IVF training, filter head). [default: 0]")] = None,
    device: DeviceOpt = "auto",
    preset: PresetOpt = None,
    sets: SetOpt = None,
    cache_dir: CacheDirOpt = None,
    out: OutOpt = None,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    setup(quiet, verbose)
    from ccli.devices import check_device

    check_device(device)  # before anything is read from or written to the cache
    from ccli.config import resolve_config
    from ccli.neighbors.build import compute_neighbors
    from ccli.neighbors.config import NeighborsConfig

    options = {
        "k": k,
        "metric": metric,
        "backend": backend,
        "index": index,
        "nlist": nlist,
        "nprobe": nprobe,
        "hnsw_m": hnsw_m,
        "ef_construction": ef_construction,
        "ef_search": ef_search,
        "include_self": include_self,
        "multi_view": multi_view,
        "clusters": clusters,
        "filter_head": filter_head,
        "filter_score": filter_score,
        "strong_mode": strong_mode,
        "strong_draws": strong_draws,
        "mult1": mult1,
        "mult2": mult2,
        "seed": seed,
        "prune": prune,
    }
    # Defaults ← preset ← --set ← explicit options: an option typed on the line wins.
    cfg = resolve_config(NeighborsConfig, "neighbors", preset, sets or (), options)
    from ccli.store.imports import ensure_features, plain_features_rows

    rows = plain_features_rows(features, "FEATURES")
    if rows is not None:  # refuse -k against the user's own file, before its import is cached
        from ccli.neighbors.knn import check_k

        check_k(cfg.k, rows, str(features))
    features = ensure_features(features, "FEATURES", cache_dir)  # a .npy/.npz/.csv is imported first
    result = compute_neighbors(
        features, cfg, out=out, cache_dir=cache_dir, force=force, device=device, block_rows=block_rows
    )
    if json_out:
        emit_json(result.as_json())
    else:
        emit_path(result.path)
    if not quiet:
        _print_purity(result)


def _print_purity(result) -> None:
    from rich.table import Table

    from ccli import log

    if result.purity is None:
        log.debug("no labels: neighbour purity not reported.")
        return
    title = f"neighbour purity ({result.n:,} points)"
    table = Table(title=title, title_justify="left", min_width=len(title))
    if result.steps:
        for name in ("step", "views", "k", "purity"):
            table.add_column(name, justify="left" if name in ("step", "views") else "right")
        for row in result.steps:
            purity = "–" if row["purity"] is None else f"{row['purity']:.4f}"
            table.add_row(row["step"], row["views"], str(row["k"]), purity)
    else:
        table.add_column("k", justify="right")
        table.add_column("purity", justify="right")
        for j, value in result.purity.items():
            table.add_row(str(j), f"{value:.4f}")
    log.console().print(table)
    if result.steps:
        _warn_if_cascade_lowered_purity(result.steps)


def _warn_if_cascade_lowered_purity(steps: list[dict]) -> None:
    """Say so when the cascade's final neighbours are less pure than plain kNN at the same k:
    the views then carry less neighbour information than the clean features (BENCHMARKS.md)."""
    from ccli import log

    plain = next((row["purity"] for row in steps if row["step"] == "knn"), None)
    final = steps[-1]["purity"]
    if plain is not None and final is not None and final < plain:
        log.warn(f"the cascade lowered neighbour purity at k={steps[-1]['k']} ({final:.4f} vs {plain:.4f} for "
                 "plain kNN): on these features the augmented views add less than they cost.")
