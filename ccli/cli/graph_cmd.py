"""`ccli graph`: a kNN graph (GCC) or a self-expression coefficient graph, stored as sparse CSR."""

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
    QuietOpt,
    SeedOpt,
    VerboseOpt,
    emit_json,
    emit_path,
    setup,
)

HELP = (
    "Build a graph artifact (CSR) from neighbours or features.\n\n"
    "--knn K: GCC's symmetric kNN adjacency (A_ij = 1 if either point is among the other's K "
    "nearest), its normalised Laplacian I − D^-1/2 A D^-1/2 (under laplacian/) and GCC's node "
    "weights √(num_pos / (1 + degree)) (under weights). INPUT is a neighbors artifact (give "
    "--features to check it belongs to them) or a features artifact (give --neighbors to reuse "
    "some, otherwise they are computed).\n\n"
    "--self-expressive: A = C + Cᵀ from the self-expression coefficients C of the features, "
    "closed-form ridge or learned, per seeded chunk of --chunk-size points, keeping the top "
    "--se-topk entries per row. INPUT is a features artifact.\n\n"
    "Example: G=$(ccli graph neighbors.h5 --knn 5)"
)


def register(app: typer.Typer) -> None:
    app.command("graph", help=HELP)(graph_command)


def graph_command(
    input_path: Annotated[Path, typer.Argument(metavar="INPUT", help="Neighbors artifact (--knn) or features artifact.")],
    knn: Annotated[Optional[int], typer.Option("--knn", help="Build the kNN graph with K neighbours per point.")] = None,
    self_expressive: Annotated[bool, typer.Option("--self-expressive", help="Build the self-expression coefficient graph.")] = False,
    neighbors: Annotated[Optional[Path], typer.Option("--neighbors", help="Neighbors artifact to reuse when INPUT is features.")] = None,
    features: Annotated[Optional[Path], typer.Option("--features", help="Features the neighbors INPUT was computed from (checked).")] = None,
    num_pos: Annotated[int, typer.Option("--num-pos", help="GCC weight numerator: positives per anchor.")] = 3,
    se_mode: Annotated[str, typer.Option("--se-mode", help="closed (ridge, exact) or learned (Adam on a masked C).")] = "closed",
    lam: Annotated[float, typer.Option("--lam", help="λ weighting ‖Z − CZ‖² (thesis: 1).")] = 1.0,
    chunk_size: Annotated[int, typer.Option("--chunk-size", help="Points per self-expression chunk.")] = 1000,
    se_topk: Annotated[int, typer.Option("--se-topk", help="Entries kept per row of A (union over rows and columns).")] = 10,
    affinity: Annotated[str, typer.Option("--affinity", help="signed: C + Cᵀ (thesis Ch. 4); abs: |C| + |Cᵀ| (Ch. 2).")] = "signed",
    se_diagonal: Annotated[str, typer.Option("--se-diagonal", help="closed form: exact (minimiser under diag(C)=0) or zero (unconstrained, diagonal zeroed).")] = "exact",
    c_norm: Annotated[str, typer.Option("--c-norm", help="learned form: fro (‖C‖²_F) or l1.")] = "fro",
    se_steps: Annotated[int, typer.Option("--se-steps", help="learned form: Adam steps per chunk.")] = 200,
    se_lr: Annotated[float, typer.Option("--se-lr", help="learned form: Adam learning rate.")] = 1e-3,
    normalize: Annotated[bool, typer.Option("--normalize/--no-normalize", help="L2-normalise features before self-expression.")] = True,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
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
    from ccli.errors import BadInput
    from ccli.graph.build import build_knn_graph, build_self_expressive_graph
    from ccli.graph.self_expressive import SelfExpressiveParams

    if (knn is None) == (not self_expressive):
        raise BadInput("give exactly one of --knn K and --self-expressive.")
    from ccli.store.imports import ensure_features

    # A .npy/.npz/.csv of features is imported first (cached under its content key).
    input_path = ensure_features(input_path, "INPUT", cache_dir)
    features = ensure_features(features, "--features", cache_dir)
    if knn is not None:
        result = build_knn_graph(
            input_path,
            knn,
            num_pos=num_pos,
            neighbors_path=neighbors,
            features_path=features,
            out=out,
            cache_dir=cache_dir,
            force=force,
            device=device,
        )
    else:
        if neighbors is not None or features is not None:
            raise BadInput("--neighbors and --features go with --knn; --self-expressive reads the features INPUT only.")
        params = SelfExpressiveParams(
            mode=se_mode,
            lam=lam,
            chunk_size=chunk_size,
            topk=se_topk,
            affinity=affinity,
            diagonal=se_diagonal,
            norm=c_norm,
            steps=se_steps,
            lr=se_lr,
            normalize=normalize,
            seed=seed,
            device=device,
        )
        result = build_self_expressive_graph(input_path, params, out=out, cache_dir=cache_dir, force=force)
    if json_out:
        emit_json(result.as_json())
    else:
        emit_path(result.path)
    if not quiet:
        _print_summary(result)


def _print_summary(result) -> None:
    from rich.table import Table

    from ccli import log

    table = Table(title=f"{result.builder} graph", title_justify="left")
    for name in ("nodes", "edges", "mean degree", "isolated", "edge purity"):
        table.add_column(name, justify="right")
    purity = "–" if result.edge_purity is None else f"{result.edge_purity:.4f}"
    table.add_row(f"{result.n:,}", f"{result.edges:,}", f"{result.mean_degree:.2f}", f"{result.isolated:,}", purity)
    log.console().print(table)
