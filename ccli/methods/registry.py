"""The method registry and the runner that turns a method's output into a run folder.

A method is one module under ccli/methods/ that exposes

    Config                       a dataclass of defaults (with `num_clusters` and `seed` fields)
    validate(inputs, config, k)  optional: bad-input checks that need the method's knowledge
    key_inputs(inputs, config)   optional: extra upstream identities for the run's content key
    run(ctx) -> Prediction       the clustering itself

and one `MethodInfo` line here saying what it consumes. The registry is a table of names and
import paths, so `ccli train --list` answers without importing torch. The runner does
everything that is the same for every method: resolving inputs, checking K, the run key and
folder, the cache hit, the predictions artifact, scores.json and the last metrics line.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Mapping, Sequence

import numpy as np

from ccli.errors import BadInput
from ccli.jsonable import json_default

# Input kind -> the option that supplies it. Order is the pipeline's order.
INPUT_OPTIONS: dict[str, str] = {
    "images": "--data",
    "checkpoint": "--checkpoint",
    "features": "--features",
    "neighbors": "--neighbors",
    "graph": "--graph",
}

RUN_FILES = ("config.yaml", "metrics.jsonl", "predictions.h5", "scores.json")


@dataclass(frozen=True)
class MethodInfo:
    name: str
    module: str
    summary: str
    consumes: tuple[str, ...]
    # Each entry is a set of alternatives, at least one of which must be given.
    requires: tuple[tuple[str, ...], ...] = ()

    def needs(self) -> str:
        """'images [+ checkpoint]' style summary of the inputs, for listings and messages."""
        required = {kind for group in self.requires for kind in group}
        parts = [" | ".join(group) for group in self.requires]
        optional = [kind for kind in self.consumes if kind not in required]
        return " ".join(parts + [f"[+ {kind}]" for kind in optional])


_METHODS: dict[str, MethodInfo] = {}


def register(info: MethodInfo) -> None:
    """Add a method (other modules' methods register here too; a name can be taken once)."""
    unknown = [kind for kind in info.consumes if kind not in INPUT_OPTIONS]
    if unknown:
        raise ValueError(f"method {info.name} consumes unknown input kinds {unknown}")
    if info.name in _METHODS and _METHODS[info.name] != info:
        raise ValueError(f"method {info.name} is already registered")
    _METHODS[info.name] = info


register(MethodInfo(
    "kmeans", "ccli.methods.kmeans",
    "k-means (faiss or scikit-learn) on a features artifact; from images it pretrains and embeds first.",
    consumes=("features", "images", "checkpoint"), requires=(("features", "images"),),
))
register(MethodInfo(
    "cc", "ccli.methods.cc",
    "Contrastive Clustering (Li et al. 2021): instance NT-Xent + cluster-column contrast with entropy term.",
    consumes=("images", "checkpoint"), requires=(("images",),),
))
register(MethodInfo(
    "dcacn", "ccli.methods.dcacn",
    "DCACN (seed 003): CBAM backbone, multi-crop views, decoupled instance and cluster contrast.",
    consumes=("images", "checkpoint"), requires=(("images",),),
))


def method_names() -> list[str]:
    return list(_METHODS)


def get(name: str) -> MethodInfo:
    if name not in _METHODS:
        raise BadInput(f"--method {name} is not a known method (valid: {', '.join(_METHODS)}).")
    return _METHODS[name]


def listing() -> list[dict[str, Any]]:
    """The registry as JSON-ready rows (name, inputs, summary) for `ccli train --list`."""
    return [
        {
            "name": info.name,
            "needs": info.needs(),
            "consumes": list(info.consumes),
            "requires_one_of": [list(group) for group in info.requires],
            "options": [INPUT_OPTIONS[kind] for kind in info.consumes],
            "summary": info.summary,
        }
        for info in _METHODS.values()
    ]


def load(info: MethodInfo) -> ModuleType:
    return importlib.import_module(info.module)


def check_inputs(info: MethodInfo, given: Mapping[str, Any]) -> None:
    """Bad input unless every given input is one the method consumes and each required group is met."""
    for kind, value in given.items():
        if value is not None and kind not in info.consumes:
            usable = ", ".join(INPUT_OPTIONS[k] for k in info.consumes)
            raise BadInput(f"{INPUT_OPTIONS[kind]} cannot be used by method {info.name} (it takes {usable}).")
    for group in info.requires:
        if not any(given.get(kind) is not None for kind in group):
            options = " or ".join(INPUT_OPTIONS[k] for k in group)
            raise BadInput(f"method {info.name} needs {options}.")


# ------------------------------------------------------------------------------------------
# Configuration
# ------------------------------------------------------------------------------------------
# Command-line options that are shorthands for config keys (`--epochs 5` = `--set epochs=5`).
OPTION_KEYS = {"--k": "num_clusters", "--seed": "seed", "--epochs": "epochs", "--batch-size": "batch_size"}


def resolve_method_config(module: ModuleType, method: str, preset: str | None, sets: Sequence[str] = (),
                          options: Mapping[str, Any] | None = None):
    """Defaults <- preset <- --set <- shorthand options, into the method's Config dataclass."""
    from ccli.config import build_config, load_preset, parse_sets

    cls = module.Config
    fields = {f.name for f in dataclasses.fields(cls)}
    layers: list[tuple[str, Mapping[str, Any]]] = []
    if preset:
        layers.append((f"--preset {preset}", load_preset(method, preset)))
    if sets:
        layers.append(("--set", parse_sets(sets)))
    for option, value in (options or {}).items():
        if value is None:
            continue
        key = OPTION_KEYS[option]
        if option == "--k" and value < 2:
            # In a config 0 means "the dataset's class count"; typed on the command line it is a mistake.
            raise BadInput(f"--k {value} is too small: clustering needs at least 2 clusters.")
        if key not in fields:
            raise BadInput(f"{option} does not apply to method {method}.")
        layers.append((option, {key: value}))
    return build_config(cls, layers)


# ------------------------------------------------------------------------------------------
# Inputs
# ------------------------------------------------------------------------------------------
@dataclass
class Inputs:
    """What the command was given, resolved: the dataset or features, and what identifies them."""

    data: str | None = None
    split: str = "all"
    checkpoint: Path | None = None
    features: Path | None = None
    neighbors: Path | None = None
    graph: Path | None = None
    dataset: Any = None  # ccli.data.sources.ImageDataset when --data was given
    num_samples: int = 0
    num_classes: int | None = None
    targets: np.ndarray | None = None  # int64 [N], -1 = unknown
    index: np.ndarray | None = None  # int64 [N], row ids written to predictions.index
    keys: list[str] = field(default_factory=list)  # upstream identities for the run's content key

    def given(self) -> dict[str, Any]:
        return {"images": self.data, "checkpoint": self.checkpoint, "features": self.features,
                "neighbors": self.neighbors, "graph": self.graph}


def resolve_inputs(inputs: Inputs) -> Inputs:
    """Load what the run is defined over (images or a features artifact) and fill N, K, targets, keys."""
    if inputs.data is not None:
        from ccli.data.sources import load_dataset

        ds = load_dataset(inputs.data, split=inputs.split)
        inputs.dataset = ds
        inputs.num_samples = len(ds)
        inputs.num_classes = ds.num_classes
        inputs.targets = ds.labels
        inputs.index = np.arange(len(ds), dtype=np.int64)
        inputs.keys.append(f"data:{ds.fingerprint}")
    if inputs.features is not None:
        from ccli.store import open_artifact

        with open_artifact(inputs.features, "features", what="--features") as art:
            n = art.shape("features")[0]
            labels = art.read("labels").astype(np.int64)
            index = art.read("index").astype(np.int64)
            key = art.key
        if inputs.dataset is not None and n != inputs.num_samples:
            raise BadInput(f"--features {inputs.features} has {n:,} rows but --data {inputs.data} has {inputs.num_samples:,} images.")
        if inputs.dataset is None:
            inputs.num_samples = n
            inputs.targets = labels
            inputs.index = index
            known = labels[labels >= 0]
            inputs.num_classes = int(len(np.unique(known))) if known.size else None
        inputs.keys.append(f"features:{key}")
    if inputs.checkpoint is not None:
        path = Path(inputs.checkpoint)
        if not path.is_file():
            raise BadInput(f"--checkpoint {path} does not exist." if not path.exists() else f"--checkpoint {path} is not a file.")
        from ccli.engine.checkpoint import file_identity

        inputs.keys.append(f"checkpoint:{file_identity(path)}")
    return inputs


def resolve_num_clusters(requested: int, inputs: Inputs) -> int:
    """K: the --k/config value, else the dataset's class count; bad input unless 2 <= K <= N."""
    source = f"--data {inputs.data}" if inputs.data is not None else f"--features {inputs.features}"
    k = requested or inputs.num_classes
    if not k:
        raise BadInput(f"{source} has no known class count; give the number of clusters with --k.")
    if k < 2:
        raise BadInput(f"--k {k} is too small: clustering needs at least 2 clusters.")
    if k > inputs.num_samples:
        raise BadInput(f"--k {k} is larger than the {inputs.num_samples:,} samples of {source}.")
    return int(k)


# ------------------------------------------------------------------------------------------
# Running
# ------------------------------------------------------------------------------------------
@dataclass
class Prediction:
    """What a method returns: hard labels, optional soft assignments, and any summary numbers."""

    labels: np.ndarray  # int64 [N]
    probs: np.ndarray | None = None  # float32 [N, K]
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunContext:
    """Everything a method's run() needs; it never parses options or picks paths itself."""

    method: str
    config: Any
    inputs: Inputs
    num_clusters: int
    run_dir: Path
    device: str = "auto"
    cache_dir: Path | None = None
    force: bool = False
    resume: bool = True

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / "metrics.jsonl"

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"


@dataclass
class RunResult:
    run_dir: Path
    predictions: Path
    scores: dict | None
    cached: bool = False


def run_key(method: str, config: Any, num_clusters: int, inputs: Inputs) -> str:
    from ccli.config import config_dict
    from ccli.store import content_key

    return content_key(
        "predictions",
        {"method": method, "config": config_dict(config), "num_clusters": num_clusters, "split": inputs.split},
        inputs.keys,
    )


def scores_for(targets: np.ndarray | None, labels: np.ndarray) -> dict | None:
    """ccli.metrics on the samples whose label is known; None when no label is known."""
    if targets is None:
        return None
    known = targets >= 0
    if not known.any():
        return None
    from ccli.metrics import clustering_scores

    return clustering_scores(targets[known], labels[known])


def train(method: str, inputs: Inputs, config: Any, *, out: Path | None = None, cache_dir: Path | None = None,
          device: str = "auto", force: bool = False, resume: bool = True) -> RunResult:
    """Run `method` and write its run folder; a finished run with the same key is returned at once.

    Every bad-input check happens before anything is written, so a rejected command leaves no
    trace on disk.
    """
    from ccli.store import cache_root

    info = get(method)
    check_inputs(info, inputs.given())
    module = load(info)
    resolve_inputs(inputs)
    k = resolve_num_clusters(getattr(config, "num_clusters", 0), inputs)
    if hasattr(module, "validate"):
        module.validate(inputs, config, k)
    if hasattr(module, "key_inputs"):
        inputs.keys.extend(module.key_inputs(inputs, config))
    key = run_key(method, config, k, inputs)
    run_dir = Path(out).expanduser() if out else cache_root(cache_dir) / "runs" / f"{method}-{key[:16]}"
    if run_dir.exists() and not run_dir.is_dir():
        raise BadInput(f"--out {run_dir} is a file; give a folder for the run.")
    predictions = run_dir / "predictions.h5"
    if not force and _finished_run(predictions, key):
        return RunResult(run_dir, predictions, _read_scores(run_dir), cached=True)
    if out and not force and predictions.exists():
        raise BadInput(f"--out {run_dir} already holds a different run; use --force to replace it or pick another folder.")

    from ccli.store import key_lock

    run_dir.mkdir(parents=True, exist_ok=True)
    with key_lock(run_dir / ".run"):
        if not force and _finished_run(predictions, key):
            return RunResult(run_dir, predictions, _read_scores(run_dir), cached=True)
        if force or _config_key(run_dir) != key:
            # A different (or forced) run starts clean; the same key with a checkpoint resumes.
            for name in RUN_FILES + ("checkpoint.pt",):
                (run_dir / name).unlink(missing_ok=True)
        _write_config(run_dir / "config.yaml", method, config, k, inputs, key)
        ctx = RunContext(method, config, inputs, k, run_dir, device, cache_dir, force, resume)
        prediction = module.run(ctx)
        scores = scores_for(inputs.targets, prediction.labels)
        _write_predictions(predictions, method, config, k, inputs, key, prediction)
        final = {"final": True, **prediction.summary, **({k_: v for k_, v in scores.items()} if scores else {})}
        with open(ctx.metrics_path, "a") as fh:
            fh.write(json.dumps(final, default=json_default) + "\n")
        if scores is not None:
            (run_dir / "scores.json").write_text(json.dumps(scores, indent=2, default=json_default) + "\n")
    return RunResult(run_dir, predictions, scores)


def _finished_run(predictions: Path, key: str) -> bool:
    from ccli.store import is_valid_artifact

    return predictions.is_file() and is_valid_artifact(predictions, "predictions", key)


def _read_scores(run_dir: Path) -> dict | None:
    path = run_dir / "scores.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _config_key(run_dir: Path) -> str | None:
    import yaml

    path = run_dir / "config.yaml"
    if not path.is_file():
        return None
    try:
        return (yaml.safe_load(path.read_text()) or {}).get("key")
    except yaml.YAMLError:
        return None


def _effective_config(method: str, config: Any, k: int, inputs: Inputs, key: str) -> dict[str, Any]:
    from ccli.config import config_dict

    return {
        "method": method,
        "key": key,
        "num_clusters": k,
        "inputs": {kind: str(value) for kind, value in inputs.given().items() if value is not None}
        | {"split": inputs.split},
        "config": config_dict(config),
    }


def _write_config(path: Path, method: str, config: Any, k: int, inputs: Inputs, key: str) -> None:
    import yaml

    from ccli.store.artifact import _plain

    path.write_text(yaml.safe_dump(_plain(_effective_config(method, config, k, inputs, key)), sort_keys=False))


def _write_predictions(path: Path, method: str, config: Any, k: int, inputs: Inputs, key: str,
                       prediction: Prediction) -> None:
    from ccli.store import ArtifactWriter

    n = inputs.num_samples
    labels = np.asarray(prediction.labels, dtype=np.int64)
    if labels.shape != (n,):
        raise ValueError(f"method {method} returned {labels.shape} labels for {n} samples")
    with ArtifactWriter(path, "predictions", key, _effective_config(method, config, k, inputs, key),
                        inputs=inputs.keys, attrs={"method": method, "num_clusters": k}) as writer:
        writer.write("labels", labels)
        writer.write("index", inputs.index if inputs.index is not None else np.arange(n, dtype=np.int64))
        if prediction.probs is not None:
            writer.write("probs", np.asarray(prediction.probs, dtype=np.float32))
        if inputs.targets is not None:
            writer.write("targets", np.asarray(inputs.targets, dtype=np.int64))
