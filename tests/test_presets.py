"""Every preset of every registered method loads, is sourced line by line, and builds its method.

Methods and presets are discovered (ccli.methods.registry.method_names(), presets/<method>/), so a
method added by another issue is checked here without editing this file. "Builds" is the cheapest
honest path through the method: its config resolved from the preset, the registry's input checks
and the method's own validate() on a tiny input of the preset's dataset shape, then, for methods on
the trainer base, build(setup) — the model and its stages — without training a step.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from ccli.config import PRETRAIN_METHODS, available_presets
from ccli.methods import registry
from ccli.presets import all_presets, dataset_of, find_presets, preset_info, unsourced, value_lines
from tests.conftest import assert_bad_input

# The tiny input's shape per dataset kind (channels, native side): what the preset will meet.
GRAYSCALE = {"digits", "mnist", "fashion-mnist"}
NATIVE_SIDE = {"digits": 8, "mnist": 28, "fashion-mnist": 28, "cifar10": 32, "cifar100-20": 32, "stl10": 96,
               "imagenet10": 96, "imagenet-dogs": 96, "tiny-imagenet": 64}

CLUSTER_PRESETS = [(m, n) for m in registry.method_names() for n in available_presets(m)]
PRETRAIN_PRESETS = [(m, n) for m in PRETRAIN_METHODS for n in available_presets(m)]


def test_every_method_with_presets_is_covered():
    assert {m for m, _ in CLUSTER_PRESETS} == {m for m in registry.method_names() if available_presets(m)}
    assert len(CLUSTER_PRESETS) >= 10 and any(m == "cc" for m, _ in CLUSTER_PRESETS)


@pytest.mark.parametrize("method, name", CLUSTER_PRESETS + PRETRAIN_PRESETS, ids=lambda v: str(v))
def test_every_value_line_names_its_source(method, name):
    info = preset_info(method, name)
    missing = [f"{info.path}:{line.number} {line.key}: {line.value}" for line in unsourced(info)]
    assert missing == [], "preset values without a source comment or PROPOSED mark"
    # every configuration key of the file was read as a value line (nothing skipped silently)
    from ccli.config import flat_config

    assert set(flat_config(info.values)) <= {line.key for line in info.lines}
    for entry in info.paper_results:
        assert entry["table"] and entry["dataset"]


def test_source_check_catches_a_bare_value(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("# header comment\nepochs: 3   # PROPOSED: short\nlr: 0.1\nname: 'a # b'  # CC config\n"
                    "engine:\n  batch_size: 8\npaper_results:\n  - table: T2\n    dataset: cifar10\n    acc: 0.8\n")
    lines = value_lines(path)
    assert [(l.key, l.value, l.comment) for l in lines] == [
        ("epochs", "3", "PROPOSED: short"), ("lr", "0.1", ""), ("name", "'a # b'", "CC config"),
        ("engine.batch_size", "8", "")]


def _tiny_inputs(tmp_path, method, config, dataset):
    """A tiny npz dataset shaped like `dataset`, plus every features/neighbors/graph input the method consumes."""
    from ccli.graph.build import build_knn_graph
    from ccli.neighbors.build import compute_neighbors
    from ccli.neighbors.config import NeighborsConfig
    from ccli.store import ArtifactWriter, content_key

    k = int(getattr(config, "num_clusters", 0) or 10)
    from ccli.config import flat_config

    # every batch-like size a preset sets (the engine's, a self-labelling stage's, …) must fit
    batches = [int(v) for key, v in flat_config(config).items() if key.endswith("batch_size") and isinstance(v, int)]
    n = max(64, 4 * k, *batches)
    channels = 1 if dataset in GRAYSCALE else 3
    side = NATIVE_SIDE.get(dataset, 32)
    rng = np.random.default_rng(0)
    labels = np.arange(n) % k
    npz = tmp_path / "tiny.npz"
    np.savez(npz, images=rng.integers(0, 256, (n, side, side, channels), dtype=np.uint8), labels=labels)
    info = registry.get(method)
    inputs = registry.Inputs(data=f"npz:{npz}") if "images" in info.consumes else registry.Inputs()
    if any(kind in info.consumes for kind in ("features", "neighbors", "graph")):
        features = tmp_path / "features.h5"
        x = rng.normal(size=(n, 16)).astype(np.float32) + labels[:, None]
        with ArtifactWriter(features, "features", content_key("features", {"tiny": n}), {"tiny": n}) as w:
            w.write("features", x)
            w.write("labels", labels.astype(np.int64))
            w.write("index", np.arange(n, dtype=np.int64))
            for view in ("weak", "strong"):  # what `ccli embed --views` stores; the multi-view cascade reads them
                w.write(f"views/{view}", x + rng.normal(scale=0.1, size=x.shape).astype(np.float32))
        if "features" in info.consumes:
            inputs.features = features
        if "neighbors" in info.consumes or "graph" in info.consumes:
            # the multi-view cascade (a superset of plain top-q rows) so methods needing it (scan+) get it
            q = max(10, int(getattr(config, "num_neighbors", 0) or 0))
            cascade = NeighborsConfig(k=q, multi_view=True, clusters=k, mult1=2, mult2=2)
            neighbors = compute_neighbors(features, cascade, out=tmp_path / "nb.h5").path
            if "neighbors" in info.consumes:
                inputs.neighbors = neighbors
            if "graph" in info.consumes:
                inputs.graph = build_knn_graph(neighbors, 5, out=tmp_path / "graph.h5").path
    return inputs


@pytest.mark.parametrize("method, name", CLUSTER_PRESETS, ids=lambda v: str(v))
def test_every_preset_builds_its_method(tmp_path, method, name):
    info = registry.get(method)
    module = registry.load(info)
    config = registry.resolve_method_config(module, method, name)
    inputs = _tiny_inputs(tmp_path, method, config, dataset_of(name))
    registry.check_inputs(info, inputs.given())
    registry.resolve_inputs(inputs)
    k = registry.resolve_num_clusters(getattr(config, "num_clusters", 0), inputs)
    if hasattr(module, "validate"):
        module.validate(inputs, config, k)
    if hasattr(module, "key_inputs"):
        assert all(isinstance(key, str) for key in module.key_inputs(inputs, config))
    if not hasattr(module, "build"):
        return
    import torch

    from ccli.data.augment import channel_stats
    from ccli.engine.ddp import DistContext
    from ccli.methods.trainer import Setup, neighbor_table, view_size
    from ccli.models import build_backbone

    images = inputs.dataset.images
    size, channels = view_size(config, images), images.shape[-1]
    torch.manual_seed(0)
    backbone = build_backbone(config.backbone, channels, size)
    mean, std = channel_stats(images, seed=0)
    ctx = registry.RunContext(method, config, inputs, k, tmp_path / "run", device="cpu")
    setup = Setup(ctx, config, inputs.dataset, backbone, size, channels, list(mean), list(std), torch.device("cpu"),
                  DistContext(), neighbor_table(inputs, getattr(config, "num_neighbors", 0)))
    plan = module.build(setup)
    assert plan.stages and all(stage.views for stage in plan.stages)
    assert sum(p.numel() for p in plan.model.parameters()) > sum(p.numel() for p in backbone.parameters())
    assert not (tmp_path / "run").exists()  # building writes nothing


@pytest.mark.parametrize("method, name", PRETRAIN_PRESETS, ids=lambda v: str(v))
def test_every_pretraining_recipe_resolves(method, name):
    from ccli.config import resolve_config
    from ccli.methods.pretrain import PretrainConfig
    from ccli.methods.pretrain.config import effective
    from ccli.methods.pretrain.models import build_views

    config = effective(resolve_config(PretrainConfig, "pretrain", f"{method}-{name}"))
    assert config.method == method
    dataset = dataset_of(name)
    views = build_views(config, config.image_size or NATIVE_SIDE.get(dataset, 96), 1 if dataset in GRAYSCALE else 3)
    assert views


def test_presets_ls_and_show(cli):
    result = cli("presets", "ls", "cc", "--json")
    assert result.code == 0, result.err
    rows = json.loads(result.out)
    assert [r["name"] for r in rows] == available_presets("cc")
    digits = next(r for r in rows if r["name"] == "digits")
    assert digits["method"] == "cc" and digits["dataset"] == "digits" and digits["values"]["epochs"] == 200
    assert "PROPOSED" in digits["sources"]["epochs"]
    result = cli("presets", "ls")
    assert result.code == 0
    assert result.out.split() == [info.full_name for info in all_presets()]
    result = cli("presets", "show", "cc/digits")
    assert result.code == 0 and result.out.strip().endswith("presets/cc/digits.yaml")
    assert "CC train.py" in result.err
    shown = [p.full_name for p in find_presets("digits")]
    assert "cc/digits" in shown and "dcacn/digits" in shown and "simclr/digits" in shown


def test_paper_results_listed_where_a_preset_has_them(cli):
    with_paper = [info for info in all_presets() if info.paper_results]
    assert with_paper, "the cc and dcacn presets carry their papers' numbers"
    info = with_paper[0]
    rows = json.loads(cli("presets", "show", info.full_name, "--json").out)
    assert rows[0]["paper_results"] == info.paper_results
    assert "paper_results" not in rows[0]["values"]


def test_presets_bad_input(cli):
    assert_bad_input(cli("presets", "show", "cc/cifr10"), "cifr10", "cc/cifar10")
    assert_bad_input(cli("presets", "show", "digts"), "digts", "digits")
    assert_bad_input(cli("presets", "ls", "nomethod"), "nomethod", "cc")
