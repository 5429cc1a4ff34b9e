"""`--preset auto`: a recipe sized to the user's images and machine, when no preset is named.

Without it a method's defaults are the paper's (ResNet-34 at 224 px for 1,000 epochs), which on
600 small images and a CPU means days without a word. The choice reads only the images' size,
channels and count (ccli.data.sources.probe_dataset, no decoding) and the device, and is said in
one line. Every value here is PROPOSED (no paper sizes a recipe to an unknown dataset); the
reasons are beside each rule. Explicit options and `--set` still win over it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable

AUTO = "auto"

# Images seen per run (epochs × N): PROPOSED so that a small-CNN run on a 2-core CPU takes minutes
# (~1,000 img/s measured for a 28 px small CNN with one thread, issue 14) and a GPU run ~an hour.
CPU_IMAGE_BUDGET = 200_000
GPU_IMAGE_BUDGET = 5_000_000
MIN_EPOCHS, MAX_EPOCHS = 20, 500


@dataclass(frozen=True)
class AutoChoice:
    values: dict[str, Any]  # config keys → values
    size: int  # the side the views will have
    native: bool
    data: str  # "1,797 images of 8×8×1 on cpu"

    def summary(self, skip: Iterable[str] = ()) -> str:
        """The one line said before the run, naming only what the choice set (not the user's keys)."""
        skip = set(skip)
        parts = []
        if "backbone" not in skip:
            parts.append(str(self.values["backbone"]))
        if "image_size" not in skip:
            parts.append(f"at {self.size} px" + (" (native)" if self.native else ""))
        if "epochs" not in skip:
            parts.append(f"{self.values['epochs']} epochs")
        if "threads" not in skip:
            threads = self.values["threads"]
            parts.append("torch's default threads" if threads == 0 else f"{threads} thread{'s' if threads != 1 else ''}")
        chosen = ", ".join(parts).replace(", at", " at")
        return f"preset auto: {chosen}, for {self.data} (--preset NAME to choose another)"


def _device_kind(device: str | None) -> str:
    if device and device.startswith("cuda"):
        return "cuda"
    if device == "cpu":
        return "cpu"
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:  # pragma: no cover - torch is a dependency
        return "cpu"


def choose(n: int, height: int, width: int, channels: int, device: str | None = "auto",
           image_size: int | None = None) -> AutoChoice:
    """Backbone, image size, epochs and threads for N images of H×W×C on `device`."""
    kind = _device_kind(device)
    side = int(image_size or min(height, width))
    if kind == "cpu":
        if side <= 32:
            # Small images: the small CNN at their native size (digits/MNIST-sized; issue 5's recipe).
            backbone, size = "small_cnn", max(side, 8)
        else:
            # Bigger photos on a CPU: ResNet-18 on a 64 px resize keeps an epoch in seconds per 1k images.
            backbone, size = "resnet18", image_size or 64
        # One intra-op thread ran 28 px convolutions 19× faster than torch's default (issue 14);
        # ResNet-sized images gain from more, up to the cores there are.
        threads = 1 if side <= 32 else max(1, min(4, os.cpu_count() or 1))
        budget = CPU_IMAGE_BUDGET
    else:
        if side <= 32:
            backbone, size = "resnet18", 32  # the CIFAR stem, as CC/SCAN train 32 px data
        elif side <= 64:
            backbone, size = "resnet18", image_size or 64
        else:
            backbone, size = "resnet34", image_size or 96  # STL-10's size (CC's 224 costs 5× more)
        threads = 0  # torch's default: the GPU does the work
        budget = GPU_IMAGE_BUDGET
    if square_native := (height == width and size == side and image_size is None and backbone == "small_cnn"):
        size_value = None  # native size: no resize
    else:
        size_value = int(size)
    epochs = int(min(MAX_EPOCHS, max(MIN_EPOCHS, round(budget / max(n, 1)))))
    values = {"backbone": backbone, "image_size": size_value, "epochs": epochs, "threads": threads}
    return AutoChoice(values, int(size), bool(square_native), f"{n:,} images of {height}×{width}×{channels} on {kind}")


def auto_sets(choice: AutoChoice, valid: Iterable[str], given: Iterable[str] = ()) -> list[str]:
    """The choice as `--set key=value` items for a config with these valid keys, skipping keys the
    user set themselves (their --set and options come later and win anyway; skipping keeps the line honest)."""
    import yaml

    valid = set(valid)
    given = set(given)
    out = []
    for key, value in choice.values.items():
        full = key if key in valid else (f"engine.{key}" if f"engine.{key}" in valid else None)
        if full is None or key in given or full in given:
            continue
        out.append(f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}")
    return out


def for_data(spec: str, split: str = "all", device: str | None = "auto", image_size: int | None = None) -> AutoChoice:
    from ccli.data.sources import probe_dataset

    shape = probe_dataset(spec, split, None)
    return choose(shape.n, shape.height, shape.width, shape.channels, device, image_size)


def resolve(preset: str | None, data: str | None, split: str, device: str | None, valid: Iterable[str],
            sets: Iterable[str] = (), explicit: dict[str, Any] | None = None,
            image_size: int | None = None, default_epochs: int | None = None) -> tuple[str | None, list[str], str | None]:
    """(preset to load, --set items with the auto choice first, the line to say or None).

    `--preset auto`, or no preset at all, on image data applies the choice; any other preset is
    passed through. Keys the user set (by --set or an option) are left to them; epochs are capped
    at `default_epochs` (the method's default).
    """
    from ccli.config import parse_sets

    if image_size is not None and (isinstance(image_size, bool) or int(image_size) < 1):
        from ccli.errors import BadInput

        raise BadInput(f"--image-size {image_size} must be a positive number of pixels.")
    sets = list(sets or ())
    if (preset not in (None, AUTO)) or data is None:
        if preset == AUTO:
            from ccli.errors import BadInput

            raise BadInput("--preset auto sizes a recipe to images; it needs --data.")
        return preset, sets, None
    valid = list(valid)
    if "backbone" not in valid:  # not an image-trained method (e.g. kmeans on features)
        if preset == AUTO:
            from ccli.errors import BadInput

            raise BadInput("--preset auto applies to methods that train on images; name a preset instead.")
        return None, sets, None
    given = set(parse_sets(sets)) | {k for k, v in (explicit or {}).items() if v is not None}
    choice = for_data(data, split, device, image_size)
    if default_epochs:
        # Auto never makes a run longer than the method's own default recipe.
        choice.values["epochs"] = min(int(choice.values["epochs"]), int(default_epochs))
    skip = {key for key in choice.values if key in given or f"engine.{key}" in given}
    if image_size is not None:
        skip.add("image_size")
    if len(skip) == len(choice.values):
        return None, sets, None  # the user chose everything auto would
    return None, auto_sets(choice, valid, given) + sets, choice.summary(skip)
