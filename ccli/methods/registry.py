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


import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Mapping, Sequence

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

# What a train run writes in its folder (globs): the run-folder protocol replaces only these.
RUN_FILES = ("config.yaml", "metrics.jsonl", "predictions.h5", "scores.json", "checkpoint-*.pt")


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
register(MethodInfo(
    "cdec", "ccli.methods.cdec",
    "cdec (seed 002, abstract only): the spec's PROPOSED reading, CC + IDEC on a shared embedding "
    "(contrast, reconstruction, DEC KL to k-means centres); not a reproduction.",
    consumes=("images", "checkpoint"), requires=(("images",),),
))
register(MethodInfo(
    "scan", "ccli.methods.scan",
    "SCAN (Van Gansbeke et al. 2020): neighbour consistency + entropy on top-q neighbours, multi-head, optional self-labelling.",
    consumes=("images", "checkpoint", "neighbors"), requires=(("images",),),
))
register(MethodInfo(
    "scan+", "ccli.methods.scan_plus",
    "scan+ (seed 004): SCAN's clustering step on MoBY features and multi-view (4q→2q→q) neighbours.",
    consumes=("images", "checkpoint", "neighbors"), requires=(("images",),),
))
register(MethodInfo(
    "selfpaced", "ccli.methods.selfpaced",
    "Self-paced instance contrast (thesis 001 Ch. 3): AE, centre + augmentation loss, thresholded pair contrast.",
    consumes=("images",), requires=(("images",),),
))
register(MethodInfo(
    "graph", "ccli.methods.graph",
    "Graph instance-cluster contrast (thesis 001 Ch. 4): conv AE + self-expression graph A = C + Cᵀ, top-k pairs.",
    consumes=("images", "graph"), requires=(("images",),),
))
register(MethodInfo(
    "gcc", "ccli.methods.gcc",
    "GCC (Zhong et al. 2021): kNN-graph-weighted instance InfoNCE with neighbour images + cluster contrast with L_au.",
    consumes=("images", "checkpoint", "neighbors", "graph"), requires=(("images",),),
))
register(MethodInfo(
    "cctc", "ccli.methods.cctc",
    "CCTC (seed 000): GCC plus trend consistency: an N×w label queue selects extra positives (L_z, L_y).",
    consumes=("images", "checkpoint", "neighbors", "graph"), requires=(("images",),),
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
OPTION_KEYS = {"--k": "num_clusters", "--seed": "seed", "--epochs": "epochs", "--batch-size": "batch_size",
               "--image-size": "image_size"}


def resolve_method_config(module: ModuleType, method: str, preset: str | None, sets: Sequence[str] = (),
                          options: Mapping[str, Any] | None = None):
    """Defaults <- preset <- --set <- shorthand options, into the method's Config dataclass."""
    from ccli.config import resolve_config, valid_keys

    keys = set(valid_keys(module.Config))
    explicit: dict[str, Any] = {}
    for option, value in (options or {}).items():
        if value is None:
            continue
        key = OPTION_KEYS[option]
        if option == "--k" and value < 2:
            # In a config 0 means "the dataset's class count"; typed on the command line it is a mistake.
            raise BadInput(f"--k {value} is too small: clustering needs at least 2 clusters.")
        if key not in keys and f"engine.{key}" not in keys:
            raise BadInput(f"{option} does not apply to method {method}.")
        explicit[key] = value
    return resolve_config(module.Config, method, preset, sets, explicit)


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
    ids: list[str] | None = None  # per-sample ids (file paths for folder: data), written to predictions.ids
    class_names: list[str] | None = None  # label i is class_names[i], written to predictions
    keys: list[str] = field(default_factory=list)  # upstream identities for the run's content key

    def given(self) -> dict[str, Any]:
        return {"images": self.data, "checkpoint": self.checkpoint, "features": self.features,
                "neighbors": self.neighbors, "graph": self.graph}


def resolve_inputs(inputs: Inputs) -> Inputs:
    """Load what the run is defined over (images or a features artifact), check every input
    against it (kind, N, what each was made from) and fill N, K, targets and the input keys."""
    if inputs.data is not None:
        from ccli.data.sources import load_dataset

        ds = load_dataset(inputs.data, split=inputs.split)
        inputs.dataset = ds
        inputs.num_samples = len(ds)
        inputs.num_classes = ds.num_classes
        inputs.targets = ds.labels
        inputs.index = np.arange(len(ds), dtype=np.int64)
        inputs.ids, inputs.class_names = ds.ids, ds.class_names
        inputs.keys.append(f"data:{ds.fingerprint}")
    features_key = None
    if inputs.features is not None:
        from ccli.store import open_artifact
        from ccli.store.sample_ids import IDS, decode_ids, read_class_names

        with open_artifact(inputs.features, "features", what="--features") as art:
            n = art.shape("features")[0]
            labels = art.read("labels").astype(np.int64)
            index = art.read("index").astype(np.int64)
            features_key = art.key
            feature_ids = decode_ids(art.read(IDS)) if IDS in art else None
            feature_names = read_class_names(art)
        if inputs.dataset is not None:
            _check_rows("--features", inputs.features, n, inputs)
        else:
            inputs.num_samples = n
            inputs.targets = labels
            inputs.index = index
            inputs.ids, inputs.class_names = feature_ids, feature_names
            known = labels[labels >= 0]
            inputs.num_classes = int(len(np.unique(known))) if known.size else None
        inputs.keys.append(f"features:{features_key}")
    neighbors_key = None
    if inputs.neighbors is not None:
        neighbors_key = _check_upstream("neighbors", inputs.neighbors, inputs, features_key, None)
        inputs.keys.append(f"neighbors:{neighbors_key}")
    if inputs.graph is not None:
        graph_key = _check_upstream("graph", inputs.graph, inputs, features_key, neighbors_key)
        inputs.keys.append(f"graph:{graph_key}")
    if inputs.checkpoint is not None:
        path = Path(inputs.checkpoint)
        if not path.is_file():
            raise BadInput(f"--checkpoint {path} does not exist." if not path.exists() else f"--checkpoint {path} is not a file.")
        from ccli.engine.checkpoint import file_identity

        inputs.keys.append(f"checkpoint:{file_identity(path)}")
    return inputs


def _defined_over(inputs: Inputs) -> str:
    return f"--data {inputs.data}" if inputs.dataset is not None else f"--features {inputs.features}"


def _check_rows(option: str, path, n: int, inputs: Inputs) -> None:
    if n != inputs.num_samples:
        what = "images" if inputs.dataset is not None else "rows"
        raise BadInput(f"{option} {path} has {n:,} rows but {_defined_over(inputs)} has {inputs.num_samples:,} {what}.")


def _check_upstream(kind: str, path, inputs: Inputs, features_key: str | None, neighbors_key: str | None) -> str:
    """A neighbors or graph input: its kind, its N, and that it was made from the features (or
    neighbours) given beside it. Returns its key."""
    from ccli.store import open_artifact

    option = INPUT_OPTIONS[kind]
    with open_artifact(path, kind, what=option) as art:
        if kind == "neighbors":
            n = art.shape("indices")[0]
        else:
            shape = art.attr("shape")
            n = int(shape[0]) if shape is not None else art.shape("indptr")[0] - 1
        key, made_from = art.key, list(art.inputs)
    if inputs.num_samples:
        _check_rows(option, path, n, inputs)
    else:
        inputs.num_samples = n
    # A kNN graph records its neighbours' key and theirs (the features'); a self-expressive graph
    # the features' key. Whatever was given beside it must be among them.
    beside = [(features_key, "--features", inputs.features)] if features_key else []
    if kind == "graph" and neighbors_key:
        beside.insert(0, (neighbors_key, "--neighbors", inputs.neighbors))
    for upstream_key, upstream_option, upstream_path in beside:
        if made_from and upstream_key not in made_from:
            raise BadInput(f"{option} {path} was made from an input with key {made_from[0][:16]}…, not from "
                           f"{upstream_option} {upstream_path} (key {upstream_key[:16]}…); rebuild it from that file.")
    return key


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
    """The run's content key: method, config (without runtime-only keys), K, split and every input's key."""
    from ccli.config import flat_config
    from ccli.engine.loop import is_runtime_key
    from ccli.store import content_key

    keyed = {k: v for k, v in flat_config(config).items() if not is_runtime_key(k)}
    return content_key(
        "predictions", {"method": method, "config": keyed, "num_clusters": num_clusters, "split": inputs.split},
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
          device: str = "auto", force: bool = False, resume: bool = True,
          announce: Callable[[], None] | None = None) -> RunResult:
    """Run `method` and write its run folder; a finished run with the same key is returned at once.

    `announce` (e.g. the caller's note on what an automatic preset chose) runs once every check
    has passed, so a refused command prints its one error sentence and nothing else.

    Every bad-input check happens before anything is written, so a rejected command leaves no
    trace on disk. The folder follows ccli.methods.runfolder: another command's or another key's
    folder is refused unless `force`. Under torchrun only rank 0 writes (and locks); every rank trains.
    """
    from ccli.engine.ddp import env_rank
    from ccli.methods import runfolder
    from ccli.methods.run_outputs import finished_run, read_scores, write_config, write_predictions
    from ccli.store import cache_root, key_lock

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
    folder = runfolder.RunFolder(run_dir, run_dir / runfolder.MARKER, RUN_FILES)
    predictions = run_dir / "predictions.h5"
    main = env_rank() == 0
    claim = runfolder.check_claim(folder, "train", key, force)
    if announce is not None:
        announce()
    if claim == "same" and not force and finished_run(predictions, key):
        return RunResult(run_dir, predictions, read_scores(run_dir), cached=True)
    ctx = RunContext(method, config, inputs, k, run_dir, device, cache_dir, force, resume)
    if not main:
        module.run(ctx)  # the other ranks train beside rank 0 and write nothing
        return RunResult(run_dir, predictions, None)

    run_dir.mkdir(parents=True, exist_ok=True)
    with key_lock(run_dir / ".run"):
        if not force and finished_run(predictions, key):
            return RunResult(run_dir, predictions, read_scores(run_dir), cached=True)
        if force or runfolder.check_claim(folder, "train", key, force) != "same":
            # A new, replaced or forced run starts clean; the same key with checkpoints resumes.
            runfolder.clear(folder, keep=[inputs.checkpoint, inputs.features, inputs.neighbors, inputs.graph])
        runfolder.write_marker(folder, "train", key, method=method)
        write_config(run_dir / "config.yaml", method, config, k, inputs, key)
        prediction = module.run(ctx)
        scores = scores_for(inputs.targets, prediction.labels)
        write_predictions(predictions, method, config, k, inputs, key, prediction)
        final = {"final": True, **prediction.summary, **({k_: v for k_, v in scores.items()} if scores else {})}
        with open(ctx.metrics_path, "a") as fh:
            fh.write(json.dumps(final, default=json_default) + "\n")
        # Always written (cluster sizes at least), so an unlabelled run says something too.
        from ccli.metrics.evaluation import run_scores

        scores = run_scores(inputs.targets, prediction.labels, inputs.class_names)
        (run_dir / "scores.json").write_text(json.dumps(scores, indent=2, default=json_default) + "\n")
    return RunResult(run_dir, predictions, scores)
