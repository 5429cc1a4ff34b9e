"""Reading a pretraining checkpoint back (`load_pretrained`) and `ccli embed`.

Features artifact written by `embed`
------------------------------------
- ``features [N, D]`` float32 (or float16): the clean view (eval transform: the image at the
  checkpoint's size, normalised), **raw, not L2-normalised**; root attr ``normalized = False``.
  Consumers that want cosine geometry normalise rows themselves.
- ``labels [N]`` int64 (−1 unknown), ``index [N]`` int64 (row in the dataset split).
- ``views/<name>`` for each augmented view asked for with ``--views`` (``weak``, ``strong``),
  same shape and dtype as ``features``. With ``--draws 1`` the name is the view's name
  (``views/weak``); with ``--draws N > 1`` each draw is ``views/<name>_<d>`` for d = 0..N−1
  (``views/weak_0``, ``views/weak_1``…). The ``views`` group carries attrs ``names`` (JSON list of
  the dataset names in order) and ``draws``. ``clean`` in ``--views`` is the ``features`` dataset.
- root attrs: ``layer`` (backbone | projector), ``normalized``, ``checkpoint`` (path),
  ``checkpoint_identity`` (content hash), ``backbone``, ``data_spec``, ``split``.
- weak = flip + 12.5% reflect-shift (FixMatch, scan+ β); strong = weak + RandAugment(4 ops,
  SCAN's list) + Cutout (scan+ α). Both flip with the checkpoint's pretraining ``flip_p``, so
  a digits model (flip_p 0) is not shown mirrored digits. Draw d of view v for rows of a block is seeded by
  (seed, v, d, block start), so a re-run reproduces every view.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ccli.errors import BadInput


@dataclass
class Pretrained:
    """A pretrained backbone (eval mode, CPU) with its projector and the checkpoint's metadata."""

    backbone: Any
    projector: Any
    info: dict[str, Any]
    path: Path

    @property
    def image_size(self) -> int:
        return int(self.info["backbone"]["image_size"])

    @property
    def in_channels(self) -> int:
        return int(self.info["backbone"]["in_channels"])

    @property
    def mean(self) -> list[float]:
        return list(self.info["normalization"]["mean"])

    @property
    def std(self) -> list[float]:
        return list(self.info["normalization"]["std"])


def load_pretrained(path, expect_backbone: Optional[str] = None, what: str = "checkpoint") -> Pretrained:
    """Rebuild the backbone and projector of a `ccli pretrain` checkpoint, or raise BadInput."""
    from ccli.engine.checkpoint import load_checkpoint
    from ccli.models import build_backbone
    from ccli.models.heads import MLP

    path = Path(path)
    state = load_checkpoint(path, what)
    if state.get("kind") != "pretrain" or "backbone" not in state or "model" not in state:
        raise BadInput(f"{what} {path} is not a `ccli pretrain` checkpoint.")
    bb = state["backbone"]
    if expect_backbone is not None and bb.get("name") != expect_backbone:
        raise BadInput(f"{what} {path} holds a {bb.get('name')} backbone, but {expect_backbone} is needed here.")
    try:
        backbone = build_backbone(bb["name"], int(bb["in_channels"]), int(bb["image_size"]))
    except BadInput as exc:
        raise BadInput(f"{what} {path}: {exc}") from exc
    weights = state["model"]
    _load_part(backbone, weights, state.get("backbone_prefix", "backbone."),
               f"{what} {path} does not hold a {bb['name']} backbone (its weights do not fit).")
    projector = None
    pinfo = state.get("projector")
    if pinfo:
        projector = MLP(int(pinfo["in_dim"]), int(pinfo["hidden"]), int(pinfo["out_dim"]), 2, bool(pinfo["bn"]))
        _load_part(projector, weights, state.get("projector_prefix", "projector."),
                   f"{what} {path} has a projector whose weights do not fit its description.")
        projector.eval()
    backbone.eval()
    info = {k: v for k, v in state.items() if k not in ("model", "optimizer")}
    return Pretrained(backbone, projector, info, path)


def _load_part(module, weights: dict, prefix: str, problem: str) -> None:
    """Load the entries of `weights` under `prefix` into `module` (strict), or BadInput(problem)."""
    sub = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
    try:
        module.load_state_dict(sub, strict=True)
    except RuntimeError as exc:
        raise BadInput(problem) from exc


EMBED_VIEWS = ("clean", "weak", "strong")


def parse_views(text: str) -> list[str]:
    names = [v.strip() for v in (text or "clean").split(",") if v.strip()]
    bad = [v for v in names if v not in EMBED_VIEWS]
    if bad:
        raise BadInput(f"--views {text}: '{bad[0]}' is not a view (valid: {', '.join(EMBED_VIEWS)}).")
    if len(set(names)) != len(names):
        raise BadInput(f"--views {text} names a view twice.")
    return names


def view_dataset_names(views: list[str], draws: int) -> list[tuple[str, str, int]]:
    """(dataset name, view, draw) for every augmented view stored under views/."""
    out = []
    for v in views:
        if v == "clean":
            continue
        if draws == 1:
            out.append((f"views/{v}", v, 0))
        else:
            out.extend((f"views/{v}_{d}", v, d) for d in range(draws))
    return out


def _embed_size(model, image_size: Optional[int], checkpoint) -> int:
    if image_size is None or int(image_size) == model.image_size:
        return model.image_size
    from ccli.models import backbone_entry

    if int(image_size) < 1:
        raise BadInput(f"--image-size {image_size} must be a positive number of pixels.")
    try:
        backbone_entry(model.info["backbone"]["name"], model.in_channels, int(image_size))
    except BadInput as exc:
        raise BadInput(f"--image-size {image_size}: {exc}") from exc
    return int(image_size)


def embed(checkpoint, data_spec: Optional[str] = None, split: Optional[str] = None, layer: str = "projector",
          views: str = "clean", draws: int = 1, batch_size: int = 512, device: str = "auto", seed: int = 0,
          out: Optional[Path] = None, cache_dir=None, force: bool = False, dtype: str = "float32",
          cutout: Optional[int] = None, image_size: Optional[int] = None) -> tuple[Path, bool]:
    """Write (or find in the cache) the features artifact of a checkpoint on a dataset; see module doc."""
    import torch

    from ccli.data.sources import load_dataset
    from ccli.engine.checkpoint import file_identity
    from ccli.engine.datapath import mix_seed
    from ccli.engine.device import autocast, autocast_dtype
    from ccli.engine.shards import joined, run_sharded
    from ccli.store import ArtifactWriter, cache_root, content_key, get_or_compute, output_path

    if layer not in ("backbone", "projector"):
        raise BadInput(f"--layer {layer} must be backbone or projector.")
    if draws < 1:
        raise BadInput(f"--draws {draws} must be at least 1.")
    if batch_size < 1:
        raise BadInput(f"--batch-size {batch_size} must be at least 1.")
    if dtype not in ("float32", "float16"):
        raise BadInput(f"--dtype {dtype} must be float32 or float16.")
    view_names = parse_views(views)
    cache_root(cache_dir)  # a --cache-dir that is a file is refused before the checkpoint is read
    model = load_pretrained(checkpoint)
    if layer == "projector" and model.projector is None:
        raise BadInput(f"checkpoint {checkpoint} has no projector; use --layer backbone.")
    data_spec = data_spec or model.info["data"]["spec"]
    split = split or model.info["data"].get("split", "all")
    # --image-size: embed at another size than the checkpoint's (the backbone must take it).
    size = _embed_size(model, image_size, checkpoint)
    dataset = load_dataset(data_spec, split=split, image_size=size)
    n, h, w, c = dataset.images.shape
    if c != model.in_channels:
        raise BadInput(f"--data {data_spec} has {c}-channel images but checkpoint {checkpoint} was trained on "
                       f"{model.in_channels}-channel ones.")
    identity = file_identity(checkpoint)
    stored = view_dataset_names(view_names, draws)
    # The augmented views flip only if pretraining did: a model taught that mirrored digits are
    # other digits would see the flipped weak view as a different image (flip_p 0 in its config).
    stage1 = model.info.get("config", {})
    flip_p = float(stage1.get("flip_p", 0.5))
    # Cutout's side: the caller's, else the one stage 1 trained with (scan+ uses one L for both).
    cutout = cutout if cutout is not None else stage1.get("cutout")
    config = {"layer": layer, "views": view_names, "draws": draws if stored else 1, "seed": seed if stored else 0,
              "split": split, "dtype": dtype, "image_size": size, "cutout": cutout,
              "view_flip_p": flip_p if stored else None}
    key = content_key("features", config, [f"checkpoint:{identity}", f"data:{dataset.fingerprint}"])
    path = output_path(out, cache_root(cache_dir), "features", key, force=force)

    # Under torchrun each rank embeds whole batches of the one-process grid (views are seeded by
    # the batch's first row), rank 0 writes them: the artifact and its key are the one-process ones.
    with joined(device) as (ctx, dev):
        def produce(lo: int, hi: int):
            from ccli.data.augment import strong_view, weak_view
            from ccli.data.gpu_augment import BatchAugmenter

            net = model.backbone if layer == "backbone" else torch.nn.Sequential(model.backbone, model.projector)
            net = net.to(dev).eval()
            amp = autocast_dtype(dev, "auto")
            clean = BatchAugmenter([_eval_view(h)], model.mean, model.std)
            augmenters = {"weak": BatchAugmenter([weak_view(h, flip_p=flip_p)], model.mean, model.std),
                          "strong": BatchAugmenter([strong_view(h, cutout=cutout, flip_p=flip_p)], model.mean,
                                                   model.std)}
            with torch.no_grad():
                for start in range(lo, hi, batch_size):
                    x = torch.from_numpy(dataset.images[start : min(hi, start + batch_size)]).to(dev)
                    x = x.permute(0, 3, 1, 2)
                    gen = torch.Generator(device=dev)
                    block = {}
                    with autocast(dev, amp):
                        block["features"] = net(clean(x, gen)[0]).float().cpu().numpy()
                        for name, view, draw in stored:
                            gen.manual_seed(mix_seed(seed, EMBED_VIEWS.index(view), draw, start))
                            block[name] = net(augmenters[view](x, gen)[0]).float().cpu().numpy()
                    yield start, block

        def build(target: Path, gather) -> None:
            out_dim = int(model.backbone.out_dim if layer == "backbone" else model.projector.out_dim)
            attrs = {"normalized": False, "layer": layer, "checkpoint": str(checkpoint),
                     "checkpoint_identity": identity, "backbone": model.info["backbone"]["name"],
                     "data_spec": dataset.spec, "split": split}
            with ArtifactWriter(target, "features", key, config, [identity, dataset.fingerprint], attrs) as writer:
                writer.write("labels", dataset.labels)
                writer.write("index", np.arange(n, dtype=np.int64))
                from ccli.store.sample_ids import write_sample_ids

                write_sample_ids(writer, dataset.ids, dataset.class_names)
                for name in ["features", *(s[0] for s in stored)]:
                    writer.create(name, (n, out_dim), dtype, any_order=ctx.distributed)
                if stored:
                    writer.set_attrs("views", names=json.dumps([s[0] for s in stored]), draws=draws)
                from ccli.engine.progress import StepProgress

                with StepProgress("embed", n) as bar:
                    done = 0

                    def write(start: int, block: dict) -> None:
                        nonlocal done
                        for name, rows in block.items():
                            writer.write_rows(name, start, rows)
                        done += len(block["features"])
                        bar.update(done)

                    gather(write)

        hit = run_sharded(ctx, n, produce, align=batch_size,
                          main=lambda gather: get_or_compute(path, "features", key, lambda t: build(t, gather),
                                                             force=force))
    return path, hit


def _eval_view(size: int):
    from ccli.data.augment import eval_view

    return eval_view(size)
