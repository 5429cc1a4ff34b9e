"""`--preset auto`: a recipe sized to the user's images and machine, when no preset is named.

Without it a method's defaults are the paper's (ResNet-34 at 224 px for 1,000 epochs), which on
600 small images and a CPU means days without a word. The choice reads only the images' size,
channels and count (ccli.data.sources.probe_dataset, no decoding) and the device, and is said in
one line that gives the reason for each value. Explicit options and `--set` still win over it.

Grayscale images start from a recipe measured on grayscale data, when the method has one: the
digits preset (`presets/<method>/digits.yaml`, tuned on 1,797 8×8 digits) for small sets, the
Fashion-MNIST one (70,000 28×28 images) for large ones. The recipe's epoch counts are scaled so
that a run sees as many images as the recipe did on its own data (600 images: 3× the epochs), and
its batch shrinks where the set is too small for it. Colour images (and methods without such a
recipe) get the method's defaults with a backbone, size and epochs sized to the machine. Every
value here is PROPOSED (no paper sizes a recipe to an unknown dataset); the reasons are beside
each rule and BENCHMARKS.md ("User's own folder") has the measurements.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

AUTO = "auto"

# Images seen per run (epochs × N): PROPOSED so that a small-CNN run on a 2-core CPU takes minutes
# (~1,000 img/s measured for a 28 px small CNN with one thread, issue 14) and a GPU run ~an hour.
CPU_IMAGE_BUDGET = 200_000
GPU_IMAGE_BUDGET = 5_000_000
MIN_EPOCHS, MAX_EPOCHS = 20, 500


@dataclass(frozen=True)
class Recipe:
    """A preset every image method ships (`presets/<method>/<name>.yaml`), measured on grayscale data."""

    name: str
    n: int  # the images it was tuned on
    side: int
    what: str


DIGITS = Recipe("digits", 1797, 8, "1,797 8×8 digits")
FASHION_MNIST = Recipe("fashion-mnist", 70_000, 28, "70,000 28×28 Fashion-MNIST images")
# PROPOSED: between the two recipes' sizes (their geometric mean is ~11k); above it a set is closer
# to Fashion-MNIST's, whose recipe trains few epochs over many images.
LARGE_SET = 10_000
# PROPOSED: the small CNN the grayscale recipes train is measured at 8 and 28 px; bigger grayscale
# images are resized to Fashion-MNIST's 28 px rather than trained at a size nothing was measured at.
GRAY_MAX_SIDE, GRAY_RESIZE = 32, 28


def recipe_for(n: int, channels: int) -> Recipe | None:
    if channels != 1:
        return None
    return DIGITS if n <= LARGE_SET else FASHION_MNIST


# What the line calls each epoch count (config keys are not words a new user knows).
EPOCH_WORDS = {
    "epochs": "epochs",
    "pretrain_epochs": "pretraining epochs",
    "simclr_epochs": "SimCLR warm-up epochs",
    "embed_epochs": "embedding-stage epochs",
    "stage1_epochs": "stage-1 epochs",
    "se_warmup_epochs": "self-expression warm-up epochs",
    "self_label_epochs": "self-labelling epochs",
}


def _epoch_text(key: str, value: int) -> str:
    if key == "delta_switch":
        return f"δ switching at epoch {value}"
    return f"{value} {EPOCH_WORDS.get(key, key.replace('_', ' '))}"


def is_epoch_key(key: str) -> bool:
    """Keys that count epochs (a stage's length, an absolute epoch): scaled together so stages keep their shares."""
    return key == "epochs" or key.endswith("_epochs") or key == "delta_switch"


@dataclass(frozen=True)
class AutoChoice:
    values: dict[str, Any]  # config keys → values, applied on top of `base`
    size: int  # the side the views will have
    native: bool
    data: str  # "600 grayscale 8×8 images on cpu"
    base: str | None = None  # the method's preset the choice starts from, None = the method's defaults
    # key → what the line says about it ("500 epochs (…)"); keys of `values` without one go unsaid
    reasons: dict[str, str] = field(default_factory=dict)
    lead: str = ""  # what the line says about `base`

    def summary(self, skip: Iterable[str] = ()) -> str:
        """The one line said before the run, naming only what the choice set (not the user's keys)."""
        skip = set(skip)
        parts = [text for key, text in self.reasons.items() if key not in skip]
        chosen = "; ".join(parts)  # a reason may hold commas (a list of epoch counts scaled alike)
        head = f"preset auto: {self.data} → {self.lead}" if self.lead else f"preset auto: {self.data} →"
        return f"{head}{': ' if self.lead and chosen else ' ' if chosen else ''}{chosen} (--preset NAME to choose another)"


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


def _describe(n: int, height: int, width: int, channels: int, kind: str) -> str:
    colour = "grayscale" if channels == 1 else "colour" if channels == 3 else f"{channels}-channel"
    return f"{n:,} {colour} {height}×{width} images on {kind}"


def _threads(n_side: int, kind: str) -> int:
    if kind != "cpu":
        return 0  # torch's default: the GPU does the work
    # One intra-op thread ran 28 px convolutions 19× faster than torch's default (issue 14);
    # ResNet-sized images gain from more, up to the cores there are.
    return 1 if n_side <= 32 else max(1, min(4, os.cpu_count() or 1))


def _threads_text(threads: int) -> str:
    if threads == 0:
        return "torch's own CPU thread count"
    return f"{threads} CPU thread{'s' if threads != 1 else ''}"


BACKBONE_WORDS = {"small_cnn": "a small CNN (small_cnn)", "resnet18": "a ResNet-18", "resnet34": "a ResNet-34"}


# PROPOSED: a contrastive recipe's batch shrinks on a small set so that an epoch keeps at least this
# many steps (digits recipe on 600 images, seed 42: batch 128 = 4 steps 0.722, batch 64 = 9 steps
# 0.810; BENCHMARKS.md "User's own folder"), but not below MIN_BATCH rows to contrast.
MIN_STEPS, MIN_BATCH = 8, 32
# Recipes with a bigger batch use it on purpose (selfpaced's pair thresholds, graph's full-set
# chunks): only the hard cap applies to them.
CONTRASTIVE_BATCH_MAX = 256


def _pow2_at_most(x: float) -> int:
    cap = 2
    while cap * 2 <= x:
        cap *= 2
    return cap


def _batch_cap(batch: int, n: int) -> tuple[int, str] | None:
    """(a smaller batch, why) for a set small for `batch`, or None when `batch` fits. A batch over N
    (which the methods refuse) becomes the largest power of two ≤ N/2; a contrastive batch leaving
    under MIN_STEPS steps per epoch the largest power of two ≤ N/MIN_STEPS (at least MIN_BATCH)."""
    if batch > n:
        return _pow2_at_most(max(n // 2, 2)), f"is more than the {n:,} images"
    if batch <= CONTRASTIVE_BATCH_MAX and n // batch < MIN_STEPS:
        cap = min(batch, max(MIN_BATCH, _pow2_at_most(n / MIN_STEPS)))
        if cap < batch:
            steps = n // batch
            return cap, (f"would make only {steps} update{'s' if steps != 1 else ''} per epoch on {n:,} images; "
                         f"{cap} makes {n // cap}")
    return None


def choose(n: int, height: int, width: int, channels: int, device: str | None = "auto",
           image_size: int | None = None, recipe: Mapping[str, Any] | None = None,
           defaults: Mapping[str, Any] | None = None, without: Iterable[str] = ()) -> AutoChoice:
    """The choice for N images of H×W×C on `device`.

    recipe: the values of the method's grayscale recipe (`recipe_for`), when it has one;
    defaults: the method's flat default config (its batch size, a pretraining recipe's epochs under
    `pretrain_recipe_epochs`); without: epoch keys left as they are (a stage that will not run)."""
    kind = _device_kind(device)
    data = _describe(n, height, width, channels, kind)
    found = recipe_for(n, channels)
    if found is not None and recipe is not None:
        return _from_recipe(found, recipe, n, height, width, kind, image_size, data, defaults or {}, set(without))
    return _sized(n, height, width, kind, image_size, data, defaults or {})


def _from_recipe(found: Recipe, recipe: Mapping[str, Any], n: int, height: int, width: int, kind: str,
                 image_size: int | None, data: str, defaults: Mapping[str, Any],
                 without: set[str] = frozenset()) -> AutoChoice:
    side = int(image_size or min(height, width))
    values: dict[str, Any] = {}
    reasons: dict[str, str] = {}
    lead = f"the {found.name} recipe (tuned on {found.what})"

    counts = {key: value for key, value in recipe.items()
              if is_epoch_key(key) and key not in without and isinstance(value, int) and not isinstance(value, bool) and value > 0}
    if ("pretrain_epochs" in defaults and "pretrain_epochs" not in without and recipe.get("pretrain_preset")
            and not recipe.get("pretrain_epochs")):
        if defaults.get("pretrain_recipe_epochs"):  # the recipe's pretraining (e.g. simclr-digits), scaled alike
            counts["pretrain_epochs"] = int(defaults["pretrain_recipe_epochs"])
    if "epochs" not in counts and defaults.get("engine.epochs"):
        counts["epochs"] = int(defaults["engine.epochs"])
    main = "epochs" if "epochs" in counts else "pretrain_epochs" if "pretrain_epochs" in counts else None
    if main is not None:
        # As many images seen as the recipe saw on its own data (equal time per image), within
        # [MIN_EPOCHS, MAX_EPOCHS] (never under the recipe's own count for a bigger set); the other
        # epoch counts (warm-ups, stages) scale alike so each keeps its share of the run.
        epochs = counts[main]
        scaled = int(min(MAX_EPOCHS, max(min(MIN_EPOCHS, epochs), round(epochs * found.n / max(n, 1)))))
        factor = scaled / epochs
        values.update({key: max(1, round(value * factor)) for key, value in counts.items()})
        values[main] = scaled
        if scaled == epochs:
            text = f"its {_epoch_text(main, epochs)}"
        else:
            bound = f", at most {MAX_EPOCHS}" if scaled == MAX_EPOCHS else ""
            text = (f"{_epoch_text(main, scaled)} (its {epochs} × {found.n:,}/{n:,} images: as many images seen as "
                    f"on {found.name}{bound})")
            others = [f"{_epoch_text(k, values[k])} (its {counts[k]})" for k in sorted(values) if k != main]
            if others:
                text += "; scaled alike: " + ", ".join(others)
        reasons[main] = text

    batch = recipe.get("batch_size") or defaults.get("engine.batch_size")
    if batch and (capped := _batch_cap(int(batch), n)) is not None:
        values["batch_size"], why = capped
        reasons["batch_size"] = f"batches of {capped[0]} images (its {batch} {why})"

    # The recipe's own size stands when it fixes one (e.g. 28 px for an autoencoder it trains).
    if recipe.get("image_size") is None:
        if side > GRAY_MAX_SIDE and image_size is None:
            values["image_size"] = GRAY_RESIZE
            reasons["image_size"] = f"images resized to {GRAY_RESIZE} px (the recipes are measured at 8 and 28 px)"
            side = GRAY_RESIZE
        elif height != width and image_size is None:
            values["image_size"] = side  # square views: shorter side, then centre crop
            reasons["image_size"] = f"the centre {side}×{side} px square of each image"
        elif image_size is None:
            reasons["image_size"] = f"images at their own {side} px"
    elif image_size is None:
        reasons["image_size"] = f"images resized to {recipe['image_size']} px (the recipe's size)"
    size = int(recipe.get("image_size") or values.get("image_size") or side)
    if kind != "cpu":
        values["threads"] = 0
        reasons["threads"] = "torch's own CPU thread count (the GPU does the work)"
    return AutoChoice(values, size, size == min(height, width), data, found.name, reasons, lead)


def _sized(n: int, height: int, width: int, kind: str, image_size: int | None, data: str,
           defaults: Mapping[str, Any]) -> AutoChoice:
    """No grayscale recipe: the method's defaults with a backbone, size and epochs for the machine."""
    side = int(image_size or min(height, width))
    if kind == "cpu":
        if side <= 32:
            # Small images: the small CNN at their native size (digits/MNIST-sized; issue 5's recipe).
            backbone, size = "small_cnn", max(side, 8)
        else:
            # Bigger photos on a CPU: ResNet-18 on a 64 px resize keeps an epoch in seconds per 1k images.
            backbone, size = "resnet18", image_size or 64
        budget = CPU_IMAGE_BUDGET
    else:
        if side <= 32:
            backbone, size = "resnet18", 32  # the CIFAR stem, as CC/SCAN train 32 px data
        elif side <= 64:
            backbone, size = "resnet18", image_size or 64
        else:
            backbone, size = "resnet34", image_size or 96  # STL-10's size (CC's 224 costs 5× more)
        budget = GPU_IMAGE_BUDGET
    threads = _threads(side, kind)
    if square_native := (height == width and size == side and image_size is None and backbone == "small_cnn"):
        size_value = None  # native size: no resize
    else:
        size_value = int(size)
    epochs = int(min(MAX_EPOCHS, max(MIN_EPOCHS, round(budget / max(n, 1)))))
    values = {"backbone": backbone, "image_size": size_value, "epochs": epochs, "threads": threads}
    if square_native:
        size_text = f"images at their own {size} px"
    elif height != width and image_size is None:
        size_text = f"images resized to {size} px, centre square"
    else:
        size_text = f"images resized to {size} px"
    reasons = {"backbone": BACKBONE_WORDS.get(backbone, backbone), "image_size": size_text,
               "epochs": f"{epochs} epochs", "threads": _threads_text(threads)}
    batch = defaults.get("engine.batch_size")
    if batch and (capped := _batch_cap(int(batch), n)) is not None and int(batch) > n:
        values["batch_size"], why = capped
        reasons["batch_size"] = f"batches of {capped[0]} images (the default {batch} {why})"
    return AutoChoice(values, int(size), bool(square_native), data, None, reasons,
                      "the method's defaults sized to the machine")


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


def for_data(spec: str, split: str = "all", device: str | None = "auto", image_size: int | None = None,
             group: str | None = None, defaults: Mapping[str, Any] | None = None,
             without: Iterable[str] = ()) -> AutoChoice:
    """The choice for a dataset spec and a method whose presets live in presets/<group>/."""
    from ccli.data.sources import probe_dataset

    shape = probe_dataset(spec, split, None)
    found = recipe_for(shape.n, shape.channels)
    recipe = _recipe_values(group, found.name) if found is not None and group else None
    defaults = dict(defaults or {})
    if recipe and recipe.get("pretrain_preset") and "pretrain_epochs" in defaults:
        defaults["pretrain_recipe_epochs"] = _pretrain_recipe_epochs(str(recipe["pretrain_preset"]))
    return choose(shape.n, shape.height, shape.width, shape.channels, device, image_size, recipe, defaults, without)


def _recipe_values(group: str, name: str) -> dict[str, Any] | None:
    from ccli.config import available_presets, load_preset

    return load_preset(group, name) if name in available_presets(group) else None


def _pretrain_recipe_epochs(name: str) -> int | None:
    from ccli.config import PRETRAIN_GROUP, available_presets, load_preset

    if name not in available_presets(PRETRAIN_GROUP):
        return None  # the method's own check names the bad recipe
    epochs = load_preset(PRETRAIN_GROUP, name).get("epochs")
    return int(epochs) if epochs else None


def resolve(preset: str | None, data: str | None, split: str, device: str | None, config_cls: type,
            group: str, sets: Iterable[str] = (), explicit: dict[str, Any] | None = None,
            image_size: int | None = None, pretrained: bool = False) -> tuple[str | None, list[str], str | None]:
    """(preset to load, --set items with the auto choice first, the line to say or None).

    `--preset auto`, or no preset at all, on image data applies the choice for the method whose
    config is `config_cls` and presets are presets/<group>/; any other preset is passed through.
    Keys the user set (by --set or an option) are left to them; epochs are capped at the method's
    default. pretrained: a checkpoint (or features) replaces the `ccli pretrain` chain of a method that
    has one (`pretrain_preset`), so its pretraining epochs are neither set nor said.
    """
    from ccli.config import flat_config, parse_sets, valid_keys
    from ccli.errors import BadInput

    if image_size is not None and (isinstance(image_size, bool) or int(image_size) < 1):
        raise BadInput(f"image_size={image_size} must be a positive number of pixels.")
    sets = list(sets or ())
    if (preset not in (None, AUTO)) or data is None:
        if preset == AUTO:
            raise BadInput("the auto preset sizes a recipe to images; it needs a dataset.")
        return preset, sets, None
    valid = list(valid_keys(config_cls))
    defaults = flat_config(config_cls())
    trains_on_images = "backbone" in valid
    if not trains_on_images and "pretrain_preset" not in valid:
        if preset == AUTO:
            raise BadInput("the auto preset applies to methods that train on images; name a preset instead.")
        return None, sets, None
    given = set(parse_sets(sets)) | {k for k, v in (explicit or {}).items() if v is not None}
    without = {"pretrain_epochs"} if pretrained and "pretrain_preset" in valid else set()
    choice = for_data(data, split, device, image_size, group, defaults, without)
    if not trains_on_images and choice.base is None:
        return None, sets, None  # kmeans on colour images: its own message asks for a recipe
    if choice.base is None and defaults.get("engine.epochs"):
        # Auto never makes a run longer than the method's own default recipe.
        choice.values["epochs"] = min(int(choice.values["epochs"]), int(defaults["engine.epochs"]))
        choice.reasons["epochs"] = f"{choice.values['epochs']} epochs"
    if any(is_epoch_key(k.removeprefix("engine.")) for k in given):
        # One epoch count given: scaling the others would break the stages' relation to it.
        for key in [k for k in choice.values if is_epoch_key(k)]:
            del choice.values[key]
        choice.reasons.pop("epochs", None)
    skip = {key for key in choice.values if key in given or f"engine.{key}" in given}
    if image_size is not None:
        skip.add("image_size")
    if "image_size" not in valid:
        skip.add("image_size")  # kmeans: its pretraining recipe sizes the views
    for key in skip:
        choice.values.pop(key, None)
        choice.reasons.pop(key, None)
    if choice.base is None and not choice.values:
        return None, sets, None  # the user chose everything auto would
    return choice.base, auto_sets(choice, valid, given) + sets, choice.summary()
