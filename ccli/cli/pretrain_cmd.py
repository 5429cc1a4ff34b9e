"""`ccli pretrain`: train a representation (SimCLR or the scan+ MoBY-style model) and write a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ccli.cli.common import (
    CacheDirOpt,
    ForceOpt,
    JsonOpt,
        QuietOpt,
    SetOpt,
    SplitOpt,
    VerboseOpt,
    emit_json,
    emit_path,
    setup,
)


def register(app: typer.Typer) -> None:
    app.command(
        "pretrain",
        help=(
            "Contrastive pretraining of a backbone: SimCLR (NT-Xent, optional multi-crop) or the scan+ "
            "stage-1 model (MoBY-style online/target networks, key queues, symmetric InfoNCE).\n\n"
            "Prints the checkpoint path. -o DIR writes DIR/checkpoint.pt, DIR/metrics.jsonl and "
            "DIR/config.yaml; -o FILE.pt writes FILE.pt with FILE.metrics.jsonl and FILE.config.yaml "
            "beside it; without -o the run goes to <cache>/runs/pretrain-<key>/ and a finished identical "
            "run is a cache hit; an unfinished run in the same folder with the same config resumes from its "
            "checkpoint, and a folder holding another run is refused unless --force. --preset NAME reads presets/<method>/NAME.yaml "
            "(e.g. --preset digits). Example: ccli pretrain --data digits --preset digits"
        ),
    )(pretrain_command)


def pretrain_command(
    data: Annotated[str, typer.Option("--data", help="Dataset spec, e.g. digits, fashion-mnist:DIR, cifar10:DIR.")] = "digits",
    split: SplitOpt = "all",
    method: Annotated[Optional[str], typer.Option("--method", "-m", help="simclr or moby [default: simclr].")] = None,
    backbone: Annotated[Optional[str], typer.Option("--backbone", help="small_cnn, resnet18/34/50[-cifar|-stl|-imagenet], cbam_… [default: the preset's].")] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="Training epochs [default: the preset's].")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Global batch size [default: the preset's].")] = None,
    image_size: Annotated[Optional[int], typer.Option("--image-size", metavar="PX", help="Resize the images to PX×PX [default: the preset's, else native].")] = None,
    multi_crop: Annotated[Optional[int], typer.Option("--multi-crop", help="Local crops per image (simclr; 0 = two views).")] = None,
    preset: Annotated[Optional[str], typer.Option("--preset", metavar="NAME|auto|FILE", help="Preset under presets/<method>/, a YAML file, or auto (the default without one: sized to the images and device).")] = None,
    sets: SetOpt = None,
    device: Annotated[Optional[str], typer.Option("--device", help="auto, cpu, cuda or cuda:N [default: auto].")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Random seed [default: the preset's].")] = None,
    augment_on: Annotated[Optional[str], typer.Option("--augment-on", help="gpu: batched on the training device; cpu: per-sample in DataLoader workers.")] = None,
    compile_model: Annotated[bool, typer.Option("--compile", help="torch.compile the trained network.")] = False,
    out: Annotated[Optional[Path], typer.Option("-o", "--out", help="Run folder, or a .pt checkpoint path.")] = None,
    cache_dir: CacheDirOpt = None,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    setup(quiet, verbose)
    from ccli.devices import check_device

    check_device(device)  # before anything is read from or written to the cache
    from ccli.methods.pretrain import pretrain

    overrides: dict[str, Any] = {
        "method": method, "backbone": backbone, "epochs": epochs, "batch_size": batch_size,
        "multicrop_local": multi_crop, "device": device, "seed": seed, "augment_on": augment_on,
        "compile": True if compile_model else None, "image_size": image_size,
    }
    from ccli import log
    from ccli.auto_preset import resolve as auto_resolve
    from ccli.methods.pretrain import PretrainConfig

    preset, sets, chosen = auto_resolve(preset, data, split, device, PretrainConfig, _preset_group(sets, overrides),
                                        sets or (), overrides, image_size)
    config = resolve_pretrain_config(preset, sets, overrides)
    # the auto preset's note is printed once every check has passed: a refused command says one sentence
    result = pretrain(config, data, split, out=out, cache_dir=cache_dir, force=force,
                      announce=(lambda: log.info(chosen)) if chosen else None)
    if json_out:
        last = result.history[-1] if result.history else {}
        emit_json({"checkpoint": str(result.checkpoint), "cached": result.cached, "last_epoch": last})
    else:
        emit_path(result.checkpoint)


def _preset_group(sets, overrides: dict[str, Any]) -> str:
    """The preset folder of the pretraining method asked for (simclr by default)."""
    from ccli.config import parse_sets

    return overrides.get("method") or parse_sets(sets or ()).get("method") or "simclr"


def resolve_pretrain_config(preset: Optional[str], sets, overrides: dict[str, Any]):
    """Defaults ← preset ← --set ← explicit options; the preset folder is the method's (simclr by default)."""
    from ccli.config import available_presets, parse_sets, presets_root, resolve_config
    from ccli.errors import BadInput
    from ccli.methods.pretrain import METHODS, PretrainConfig

    method = overrides.get("method") or parse_sets(sets).get("method")
    if method is not None and method not in METHODS:
        raise BadInput(f"--method {method} is not a pretraining method (available: {', '.join(METHODS)}).")
    wanted = _preset_group(sets, overrides)
    if preset and not (preset.endswith((".yaml", ".yml")) or Path(preset).is_file()):
        if not (presets_root() / wanted / f"{preset}.yaml").is_file():
            raise BadInput(f"--preset {preset} is not a {wanted} pretraining preset "
                           f"(available: {', '.join(available_presets(wanted)) or 'none'}).")
    return resolve_config(PretrainConfig, wanted, preset, sets, overrides, explicit_source="option")
