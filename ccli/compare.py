"""`ccli compare`: several methods × seeds on one dataset through their whole chains, then one report.

Each method's run goes through `ccli train`'s library (ccli.methods.registry.train) into
`DIR/runs/<method>-<dataset>-seed<S>/`. What a method needs beyond the images comes from the
chain pretrain → embed → neighbours → graph, each step through the cache, so two methods that
need the same stage (the same recipe on the same data, the same kNN of the same features) share
one artifact: no special case, the content keys agree. A method that pretrains on its own (kmeans
from images with its `pretrain_preset`) hits the same cache entry. A finished run is a cache hit,
so re-running after adding a method trains only the new one.

Methods are the registry's (ccli.methods.registry.method_names()) and their presets
presets/<method>/; nothing here names a method. The chain reads what a method declares
(MethodInfo.requires/consumes) and a few config keys when the method has them
(`pretrain_preset`, `embed_layer`, `backbone`, `num_neighbors`).
"""

from __future__ import annotations

import difflib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ccli import log
from ccli.errors import BadInput

# Input kinds a chain can make, in the pipeline's order ("images" is --data itself).
CHAIN_KINDS = ("checkpoint", "features", "neighbors", "graph")
DEFAULT_PRETRAIN_METHOD = "simclr"  # PROPOSED: the recipe family every dataset preset ships (issue 3)
GRAPH_K = 10  # PROPOSED: kNN graph degree when a method needs a graph and says nothing (GCC-style small k)


@dataclass
class PlannedRun:
    method: str
    seed: int
    config: Any
    preset: Optional[str]
    needs: tuple[str, ...]  # chain kinds this run is given (beyond the images)
    run_dir: Path
    recipe: Optional[str] = None  # the pretraining recipe of its chain


@dataclass
class CompareRun:
    method: str
    seed: int
    run_dir: Path
    predictions: Path
    cached: bool
    scores: Optional[dict]
    seconds: float


@dataclass
class CompareResult:
    runs: list[CompareRun]
    reports: list[Path]
    shared: dict[str, list[str]] = field(default_factory=dict)  # artifact path -> the runs that used it


def parse_methods(text: str) -> list[str]:
    from ccli.methods.registry import method_names

    names = list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    valid = method_names()
    if not names:
        raise BadInput(f"--methods is empty (valid: {', '.join(valid)}).")
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise BadInput(f"--methods {', '.join(unknown)}: not a known method (valid: {', '.join(valid)}).")
    return names


def _dataset_name(data: str) -> str:
    from ccli.data.sources import parse_spec

    return parse_spec(data)[0]


def method_preset(method: str, preset: Optional[str], dataset: str) -> Optional[str]:
    """--preset NAME when given (bad input naming close names when the method has presets but not this one;
    a method without any preset runs its defaults); else the method's preset named after the dataset, when it
    has one; else none (the method's defaults)."""
    from ccli.config import available_presets

    names = available_presets(method)
    if preset is None:
        return dataset if dataset in names else None
    if preset.endswith((".yaml", ".yml")) or Path(preset).is_file():
        return preset
    if not names:
        log.info(f"compare: method {method} has no presets; it runs with its defaults")
        return None
    if preset not in names:
        close = difflib.get_close_matches(preset, names, n=5, cutoff=0.4)
        hint = f"close names: {', '.join(close)}" if close else f"its presets: {', '.join(names) or 'none'}"
        raise BadInput(f"--preset {preset} is not a preset of method {method} ({hint}).")
    return preset


def _needs(info) -> tuple[str, ...]:
    """The chain kinds a method must be given: per required group, images when allowed, else the first kind
    the chain makes; each kind brings the ones before it that the method also consumes."""
    wanted: list[str] = []
    for group in info.requires:
        if "images" in group:
            continue
        kind = next((k for k in CHAIN_KINDS if k in group), None)
        if kind is None:
            raise BadInput(f"method {info.name} needs {' or '.join(group)}, which ccli compare cannot make.")
        wanted.append(kind)
    if not wanted:
        return ()
    deepest = max(CHAIN_KINDS.index(k) for k in wanted)
    given = [k for k in CHAIN_KINDS[: deepest + 1] if k in wanted or (k in info.consumes and k != "checkpoint")]
    if "checkpoint" in info.consumes and "checkpoint" not in given:
        given.insert(0, "checkpoint")  # dropped later when the backbones differ
    return tuple(given)


def _recipe(config: Any, pretrain: Optional[str], preset: Optional[str], dataset: str, others: list[str]) -> str:
    """A method's pretraining recipe: its own `pretrain_preset`, else --pretrain, else simclr-<--preset> or
    simclr-<dataset>, else the recipe another method of this comparison uses (so they share it)."""
    from ccli.config import available_presets

    own = getattr(config, "pretrain_preset", "")
    if own:
        return own
    if pretrain:
        return pretrain
    recipes = available_presets("pretrain")
    for name in (preset, dataset):
        if name and not name.endswith((".yaml", ".yml")) and f"{DEFAULT_PRETRAIN_METHOD}-{name}" in recipes:
            return f"{DEFAULT_PRETRAIN_METHOD}-{name}"
    if others:
        return others[0]
    raise BadInput(f"no pretraining recipe for {dataset}: give one with --pretrain (available: {', '.join(recipes)}).")


def _pretrain_config(recipe: str):
    from ccli.config import resolve_config
    from ccli.methods.pretrain import PretrainConfig
    from ccli.methods.pretrain.config import effective

    try:
        return effective(resolve_config(PretrainConfig, "pretrain", recipe))
    except BadInput as exc:
        raise BadInput(f"pretraining recipe {recipe}: {exc}") from exc


def plan(data: str, methods: list[str], seeds: int, preset: Optional[str], out: Path,
         pretrain: Optional[str] = None) -> list[PlannedRun]:
    """Every run of the comparison, each config resolved; bad input before anything is written."""
    from ccli.methods import registry

    if seeds < 1:
        raise BadInput(f"--seeds {seeds} must be at least 1.")
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {out} is a file; give a folder for the comparison.")
    dataset = _dataset_name(data)
    planned = []
    configs = {}
    for method in methods:
        module = registry.load(registry.get(method))
        chosen = method_preset(method, preset, dataset)
        configs[method] = (module, chosen, registry.resolve_method_config(module, method, chosen))
    others = [c.pretrain_preset for _, _, c in configs.values() if getattr(c, "pretrain_preset", "")]
    for method in methods:
        info = registry.get(method)
        module, chosen, base = configs[method]
        first = int(getattr(base, "seed", 0))
        needs = _needs(info)
        recipe = _recipe(base, pretrain, preset, dataset, others) if needs else None
        if recipe:
            _pretrain_config(recipe)
        for i in range(seeds):
            seed = first + i
            config = registry.resolve_method_config(module, method, chosen, options={"--seed": seed})
            planned.append(PlannedRun(method, seed, config, chosen, needs,
                                      out / "runs" / f"{method}-{dataset}-seed{seed}", recipe))
    return planned


def prevalidate(data: str, split: str, runs: list[PlannedRun]) -> None:
    """The checks `ccli train` makes before writing, for every run given images only (the others are
    checked by the registry once their chain's files exist)."""
    from ccli.methods import registry

    for run in runs:
        if run.needs:
            continue
        info = registry.get(run.method)
        inputs = registry.Inputs(data=data, split=split)
        registry.check_inputs(info, inputs.given())
        registry.resolve_inputs(inputs)
        k = registry.resolve_num_clusters(getattr(run.config, "num_clusters", 0), inputs)
        module = registry.load(info)
        if hasattr(module, "validate"):
            module.validate(inputs, run.config, k)


def _chain(run: PlannedRun, data: str, split: str, cache_dir, device: str, force: bool) -> dict[str, Path]:
    """The files of a run's chain, each made once through the cache."""
    if not run.needs:
        return {}
    from ccli.methods.pretrain import embed
    from ccli.methods.pretrain import pretrain as run_pretrain

    recipe_config = _pretrain_config(run.recipe)
    made: dict[str, Path] = {}
    checkpoint = run_pretrain(recipe_config, data, split, cache_dir=cache_dir).checkpoint
    made["checkpoint"] = Path(checkpoint)
    if any(k in run.needs for k in ("features", "neighbors", "graph")):
        layer = getattr(run.config, "embed_layer", "backbone")
        features, _ = embed(checkpoint, data, split, layer=layer, device=device, cache_dir=cache_dir)
        made["features"] = Path(features)
    if any(k in run.needs for k in ("neighbors", "graph")):
        from ccli.neighbors.build import compute_neighbors
        from ccli.neighbors.config import NeighborsConfig

        k = max(NeighborsConfig().k, int(getattr(run.config, "num_neighbors", 0) or 0))
        made["neighbors"] = Path(compute_neighbors(made["features"], NeighborsConfig(k=k), cache_dir=cache_dir,
                                                   device=device).path)
    if "graph" in run.needs:
        from ccli.graph.build import build_knn_graph

        graph_k = int(getattr(run.config, "num_neighbors", 0) or GRAPH_K)
        made["graph"] = Path(build_knn_graph(made["neighbors"], graph_k, cache_dir=cache_dir, device=device).path)
    # A warm start only when the method builds the recipe's backbone (else it trains its own from scratch).
    backbone = getattr(run.config, "backbone", None)
    pretrained_backbone = _checkpoint_backbone(made["checkpoint"])
    if backbone is not None and backbone != pretrained_backbone and "checkpoint" in run.needs:
        log.info(f"compare: {run.method} builds {backbone}, the recipe {run.recipe} {pretrained_backbone}: "
                 "no warm start from it")
        made.pop("checkpoint")
    return {kind: path for kind, path in made.items() if kind in run.needs}


def _checkpoint_backbone(path: Path) -> Optional[str]:
    from ccli.methods.pretrain import load_pretrained

    return load_pretrained(path, what="checkpoint").info["backbone"]["name"]


def compare(data: str, methods: list[str], out: Path, *, seeds: int = 1, preset: Optional[str] = None,
            pretrain: Optional[str] = None, split: str = "all", cache_dir=None, device: str = "auto",
            force: bool = False, formats: tuple[str, ...] = ("html", "md"), map_method: str = "pca",
            title: Optional[str] = None) -> CompareResult:
    from ccli.methods import registry
    from ccli.report import collect_runs, write_report
    from ccli.report.paper import paper_results_for

    planned = plan(data, methods, seeds, preset, out, pretrain)
    prevalidate(data, split, planned)
    results, shared = [], {}
    for number, run in enumerate(planned, 1):
        log.info(f"compare [{number}/{len(planned)}]: {run.method} seed {run.seed}"
                 + (f" (preset {run.preset})" if run.preset else " (defaults)"))
        started = time.perf_counter()
        given = _chain(run, data, split, cache_dir, device, force)
        for path in given.values():
            shared.setdefault(str(path), []).append(f"{run.method}/seed{run.seed}")
        inputs = registry.Inputs(data=data, split=split, **given)
        result = registry.train(run.method, inputs, run.config, out=run.run_dir, cache_dir=cache_dir, device=device,
                                force=force)
        if result.cached:
            log.info(f"compare: {run.method} seed {run.seed} is already in {result.run_dir} (cached)")
        results.append(CompareRun(run.method, run.seed, result.run_dir, result.predictions, result.cached,
                                  result.scores, time.perf_counter() - started))
    summaries = collect_runs([r.run_dir for r in results])
    heading = title or f"ccli compare: {', '.join(methods)} on {data} ({seeds} seed{'s' if seeds > 1 else ''})"
    reports = write_report(summaries, out, heading, formats, map_method, paper_results_for)
    return CompareResult(results, reports, shared)
