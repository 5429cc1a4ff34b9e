"""`ccli embed`: features of a dataset under a pretrained checkpoint, as a features artifact."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ccli.cli.common import CacheDirOpt, ForceOpt, JsonOpt, QuietOpt, VerboseOpt, emit_json, emit_path, setup


def register(app: typer.Typer) -> None:
    app.command(
        "embed",
        help=(
            "Embed a dataset with a `ccli pretrain` checkpoint into a features artifact (HDF5): "
            "features [N,D] (raw, not L2-normalised; attr normalized=false), labels [N], index [N], and "
            "with --views weak,strong the augmented views under views/<name> (views/<name>_<d> when "
            "--draws > 1). Streams in blocks; a re-run with the same inputs is a cache hit. Prints the "
            "artifact path. Example: F=$(ccli embed run/checkpoint.pt --data digits)"
        ),
    )(embed_command)


def embed_command(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint written by ccli pretrain.")],
    data: Annotated[Optional[str], typer.Option("--data", help="Dataset spec [default: the checkpoint's].")] = None,
    split: Annotated[Optional[str], typer.Option("--split", help="train, test or all [default: the checkpoint's].")] = None,
    layer: Annotated[str, typer.Option("--layer", help="projector (the contrastive head output: the better clustering features) or backbone (pooled features).")] = "projector",
    views: Annotated[str, typer.Option("--views", help="Comma list of clean, weak, strong.")] = "clean",
    draws: Annotated[int, typer.Option("--draws", help="Augmented draws per view.")] = 1,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per forward pass.")] = 512,
    image_size: Annotated[Optional[int], typer.Option("--image-size", metavar="PX", help="Embed at PX×PX [default: the checkpoint's size].")] = None,
    dtype: Annotated[str, typer.Option("--dtype", help="float32 or float16 storage.")] = "float32",
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the augmented views.")] = 0,
    out: Annotated[Optional[Path], typer.Option("-o", "--out", help="Output file (default: the cache).")] = None,
    cache_dir: CacheDirOpt = None,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    setup(quiet, verbose)
    from ccli.devices import check_device

    check_device(device)  # before anything is read from or written to the cache
    from ccli import log
    from ccli.methods.pretrain import embed

    path, hit = embed(checkpoint, data, split, layer=layer, views=views, draws=draws, batch_size=batch_size,
                      device=device, seed=seed, out=out, cache_dir=cache_dir, force=force, dtype=dtype,
                      image_size=image_size)
    if hit:
        log.info(f"cache hit: {path}")
    if json_out:
        emit_json({"features": str(path), "cached": hit})
    else:
        emit_path(path)
