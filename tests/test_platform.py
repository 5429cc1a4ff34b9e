"""The clustering-method platform: neighbour pairs, stages, hooks, inputs, run folders, config, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ccli.errors import BadInput
from ccli.store import ArtifactWriter
from tests.conftest import assert_bad_input
from tests.ddp_launch import free_port, one_and_two_ranks, write_worker

REPO = Path(__file__).resolve().parent.parent


# --- neighbour pairs ------------------------------------------------------------------------
def test_sample_neighbors_is_a_fixed_uniform_draw_over_each_rows_valid_entries():
    from ccli.data.pairs import sample_neighbors

    table = np.array([[5, 6, 7, -1], [8, -1, -1, -1], [-1, -1, -1, -1], [1, 2, 3, 4]], dtype=np.int64)
    index = np.array([0, 1, 2, 3])
    first = sample_neighbors(table, index, epoch=1, seed=0)
    assert (first == sample_neighbors(table, index, epoch=1, seed=0)).all()  # a hash, not a stream
    assert first[0] in (5, 6, 7) and first[1] == 8 and first[2] == 2  # no neighbour: the anchor itself
    # Over many epochs every valid entry is drawn about equally often, padding never.
    draws = np.array([sample_neighbors(table, [0, 3], epoch=e, seed=1) for e in range(4000)])
    counts0 = np.bincount(draws[:, 0], minlength=8)[5:8]
    counts3 = np.bincount(draws[:, 1], minlength=5)[1:5]
    assert counts0.sum() == 4000 and counts3.sum() == 4000
    assert np.all(np.abs(counts0 / 4000 - 1 / 3) < 0.03) and np.all(np.abs(counts3 / 4000 - 1 / 4) < 0.03)
    # The draw does not depend on which other anchors share the batch.
    assert sample_neighbors(table, [3], epoch=7, seed=1)[0] == sample_neighbors(table, [0, 1, 3], epoch=7, seed=1)[2]


def test_neighbor_table_drops_the_anchor_and_graph_rows_give_their_heaviest_entries():
    from ccli.data.pairs import neighbor_table, table_from_graph

    indices = np.array([[0, 2, 1], [1, 0, 1], [2, 2, 0]])
    assert neighbor_table(indices, has_self=True).tolist() == [[2, 1], [0, -1], [0, -1]]
    assert neighbor_table(np.array([[1, 0, 2], [2, 1, 0]])).tolist() == [[1, 2], [2, 0]]
    assert neighbor_table(np.array([[1, 2, 3]] * 4), num_neighbors=1).tolist() == [[1], [2], [1], [1]]
    import scipy.sparse as sp

    graph = sp.csr_matrix(np.array([[1.0, 0.2, 0.9, 0.0], [0.5, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0],
                                    [0.1, 0.3, 0.2, 0.0]]))
    table = table_from_graph(graph.indptr, graph.indices, graph.data, 4, 2)
    assert table.tolist() == [[2, 1], [0, -1], [-1, -1], [1, 2]]


def _digits(n=256):
    from sklearn.datasets import load_digits

    d = load_digits()
    images = (d.images[:n] * 255 / 16).astype(np.uint8)[..., None]
    return images, d.target[:n].astype(np.int64)


@pytest.mark.parametrize("augment_on", ["gpu", "cpu"])
def test_pair_batches_carry_the_sampled_neighbour_and_its_views(augment_on):
    from ccli.data.augment import eval_view
    from ccli.data.pairs import sample_neighbors
    from ccli.engine import make_data_path

    images, labels = _digits()
    table = np.stack([(np.arange(256) + s) % 256 for s in (1, 2, 3)], axis=1)
    data = make_data_path(augment_on, images, labels, [eval_view(8)], [0.0], [1.0], 64, "cpu", seed=5, workers=0,
                          neighbors=table, neighbor_views=[eval_view(8)])
    batches = list(data.batches(3))
    assert len(batches) == 4
    for batch in batches:
        index, partner = batch["index"].numpy(), batch["neighbor_index"].numpy()
        assert (partner == sample_neighbors(table, index, 3, 5)).all()
        assert ((partner - index) % 256 >= 1).all() and ((partner - index) % 256 <= 3).all()
        # eval views are the images themselves (/255): the neighbour's view is the neighbour's image
        expected = torch.from_numpy(images[partner]).permute(0, 3, 1, 2).float() / 255
        torch.testing.assert_close(batch["neighbor_views"][0], expected)
    seen = np.concatenate([b["index"].numpy() for b in batches])
    assert len(np.unique(seen)) == 256  # each anchor once per epoch


# --- engine stages and hooks ----------------------------------------------------------------
def _tiny_fit(folder, stage, epochs, before_epoch=None, resume=False):
    from torch import nn

    from ccli.data.augment import eval_view
    from ccli.engine import EngineConfig, RunFiles, Task, fit, make_data_path

    images, labels = _digits(128)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 4))

    def loss_step(net, batch, ctx):
        return {"loss": net(batch["views"][0]).pow(2).mean()}

    data = make_data_path("gpu", images, labels, [eval_view(8)], [0.0], [1.0], 32, "cpu", seed=0)
    files = RunFiles(Path(folder) / f"checkpoint-{stage}.pt", Path(folder) / "metrics.jsonl",
                     Path(folder) / "config.yaml")
    fit(Task(model, model, loss_step, before_epoch=before_epoch), data,
        EngineConfig(epochs=epochs, batch_size=32, optimizer="sgd", lr=0.01, knn_every=0), files,
        config_record={"stage": stage}, stage=stage, resume=resume)
    return files


def test_stages_share_one_metrics_file_and_a_stage_replaces_only_its_own_lines(tmp_path):
    calls = []
    _tiny_fit(tmp_path, "first", 2, before_epoch=lambda ctx: calls.append((ctx.stage, ctx.epoch, ctx.step)))
    _tiny_fit(tmp_path, "second", 3, before_epoch=lambda ctx: calls.append((ctx.stage, ctx.epoch, ctx.step)))
    # before_epoch runs once per epoch, before its first step (4 steps per epoch)
    assert calls == [("first", 1, 0), ("first", 2, 4), ("second", 1, 0), ("second", 2, 4), ("second", 3, 8)]
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["epoch"]) for r in lines] == [("first", 1), ("first", 2), ("second", 1), ("second", 2),
                                                           ("second", 3)]
    assert (tmp_path / "checkpoint-first.pt").is_file() and (tmp_path / "checkpoint-second.pt").is_file()
    # Resuming (here: re-entering) the second stage keeps the first stage's record.
    _tiny_fit(tmp_path, "second", 3, resume=True)
    again = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert again == lines


# --- inputs, stages and hooks through `ccli train` ------------------------------------------
@pytest.fixture
def pair_method():
    from ccli.methods import registry

    registry.register(registry.MethodInfo(
        "pairtoy", "pair_method", "test: warm-up then neighbour pairs",
        consumes=("images", "checkpoint", "features", "neighbors", "graph"), requires=(("images",), ("neighbors", "graph")),
    ))
    import pair_method as module

    module.SEEN["before_epoch"].clear()
    module.SEEN["pairs"].clear()
    yield module
    registry._METHODS.pop("pairtoy")


def _features(path, n=1797, key="raw-digits"):
    from sklearn.datasets import load_digits

    d = load_digits()
    with ArtifactWriter(path, "features", key, {"test": key}) as w:
        w.write("features", d.data[:n].astype(np.float32))
        w.write("labels", d.target[:n].astype(np.int64))
        w.write("index", np.arange(n, dtype=np.int64))
    return path


def _neighbors(path, features_key="raw-digits", n=1797, k=5, key="nb", shift=1):
    indices = np.stack([(np.arange(n) + s) % n for s in range(shift, shift + k)], axis=1).astype(np.int64)
    with ArtifactWriter(path, "neighbors", key, {"k": k}, [features_key], attrs={"k": k, "exclude_self": True}) as w:
        w.write("indices", indices)
        w.write("scores", np.ones((n, k), dtype=np.float32))
    return path


def test_a_two_stage_neighbour_method_trains_through_the_base(cli, tmp_path, pair_method):
    from ccli.engine.checkpoint import load_checkpoint

    nb = _neighbors(tmp_path / "nb.h5")
    out = tmp_path / "run"
    result = cli("train", "--method", "pairtoy", "--data", "digits", "--neighbors", nb, "-o", out, "-q")
    assert result.code == 0, result.err
    assert sorted(p.name for p in out.glob("checkpoint-*.pt")) == ["checkpoint-pairs.pt", "checkpoint-warmup.pt"]
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("stage") for r in lines] == ["warmup", "pairs", None] and lines[-1]["final"]
    assert [(s, e) for s, e, _ in pair_method.SEEN["before_epoch"]] == [("warmup", 1), ("pairs", 1)]
    # The buffer the hook counts into is checkpointed with the model, so it survives a resume.
    assert int(load_checkpoint(out / "checkpoint-pairs.pt")["model"]["epochs_seen"]) == 2
    pairs = pair_method.SEEN["pairs"]
    assert len(pairs) == 1797 // 128
    for index, partner in pairs:
        assert (((partner - index) % 1797 >= 1) & ((partner - index) % 1797 <= 5)).all()
    # A re-run resumes into the stages: both are complete, so nothing is retrained.
    pair_method.SEEN["before_epoch"].clear()
    (out / "predictions.h5").unlink()
    result = cli("train", "--method", "pairtoy", "--data", "digits", "--neighbors", nb, "-o", out)
    assert result.code == 0 and "stage warmup is complete" in result.err and "stage pairs is complete" in result.err
    assert pair_method.SEEN["before_epoch"] == []


def test_neighbour_and_graph_inputs_are_checked_and_keyed(cli, tmp_path, pair_method):
    feats = _features(tmp_path / "f.h5")
    other = _features(tmp_path / "g.h5", key="other-features")
    out = tmp_path / "never"
    base = ("train", "--method", "pairtoy", "--data", "digits", "-o", out)
    small = _neighbors(tmp_path / "small.h5", n=1000)
    assert_bad_input(cli(*base, "--neighbors", small), "--neighbors", "1,000 rows", "1,797 images")
    made_elsewhere = _neighbors(tmp_path / "elsewhere.h5", features_key="other-features")
    assert_bad_input(cli(*base, "--features", feats, "--neighbors", made_elsewhere), "--neighbors",
                     "other-features"[:16], "--features", "raw-digits")
    assert_bad_input(cli(*base, "--neighbors", feats), "--neighbors", "features")  # the wrong kind
    assert_bad_input(cli("train", "--method", "cc", "--data", "digits", "--neighbors", small, "-o", out),
                     "--neighbors cannot be used by method cc", "--data", "--checkpoint")
    assert_bad_input(cli(*base), "needs --neighbors or --graph")
    assert not out.exists()
    # Every input's key is part of the run key: other neighbours never hit this run's cache entry.
    from ccli.methods import registry

    def key_for(neighbors_path):
        module = registry.load(registry.get("pairtoy"))
        inputs = registry.resolve_inputs(registry.Inputs(data="digits", neighbors=neighbors_path))
        return registry.run_key("pairtoy", module.Config(), 10, inputs)

    one, two = _neighbors(tmp_path / "one.h5", key="nb-one"), _neighbors(tmp_path / "two.h5", key="nb-two", shift=2)
    assert key_for(one) != key_for(two) and key_for(one) == key_for(one)
    del other


# --- run folders ----------------------------------------------------------------------------
def test_train_into_a_pretraining_folder_is_refused_and_never_deletes_its_input(cli, tmp_path):
    folder = tmp_path / "D"
    pre = cli("pretrain", "--data", "digits", "--preset", "digits", "--epochs", "1", "--set", "knn_every=0",
              "-o", folder, "-q")
    assert pre.code == 0, pre.err
    checkpoint = folder / "checkpoint.pt"
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    args = ("train", "--method", "cc", "--data", "digits", "--preset", "digits", "--epochs", "1", "--set",
            "backbone=small_cnn", "--checkpoint", checkpoint, "-o", folder, "-q")
    assert_bad_input(cli(*args), f"--out {folder} holds a `ccli pretrain` run")
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before
    forced = cli(*args, "--force")
    assert forced.code == 0, forced.err
    assert checkpoint.read_bytes() == before["checkpoint.pt"]  # the input survives --force
    assert json.loads((folder / "run.json").read_text())["command"] == "train"


def test_another_train_key_in_the_same_folder_is_refused(cli, tmp_path):
    out = tmp_path / "run"
    tiny = ("train", "--method", "cc", "--data", "digits", "--preset", "digits", "--epochs", "1", "-o", out, "-q")
    assert cli(*tiny).code == 0
    kept = (out / "predictions.h5").read_bytes()
    assert_bad_input(cli(*tiny, "--set", "tau=0.3"), "holds a different train run")
    assert (out / "predictions.h5").read_bytes() == kept


# --- config ---------------------------------------------------------------------------------
def test_engine_keys_are_declared_once_and_spelt_flat_or_dotted():
    from ccli.config import build_config, resolve_config, valid_keys
    from ccli.methods import cc, dcacn

    flat = build_config(cc.Config, [("--set", {"lr": "2e-3", "epochs": 5})])
    dotted = build_config(cc.Config, [("--set", {"engine.lr": 2e-3, "engine.epochs": 5})])
    assert flat == dotted and flat.engine.lr == 0.002 and flat.engine.epochs == 5
    # A method's engine defaults survive a partial override of the section.
    assert flat.engine.optimizer == "adam" and cc.Config().engine.epochs == 1000
    preset = resolve_config(dcacn.Config, "dcacn", "digits", ["batch_size=64"], {"epochs": 3})
    assert (preset.engine.batch_size, preset.engine.epochs, preset.engine.lr) == (64, 3, 2e-3)
    assert "engine.lr" in valid_keys(cc.Config) and "lr" not in valid_keys(cc.Config)
    with pytest.raises(BadInput, match=r"unknown key 'learning_rate' \(valid keys: .*engine\.lr"):
        build_config(cc.Config, [("--set", {"learning_rate": 1})])
    # No method module re-declares an engine field.
    from dataclasses import fields

    from ccli.engine.loop import EngineConfig

    engine_names = {f.name for f in fields(EngineConfig)}
    for module in (cc, dcacn):
        assert not engine_names & {f.name for f in fields(module.Config)}


# --- DDP ------------------------------------------------------------------------------------
# Both views' embeddings are gathered, so every rank computes the global batch's loss.
_GATHERED_LOSS = """
def loss_step(net, batch, ctx):
    (x,) = batch["views"]
    z = net(torch.cat([x, x.flip(-1)]))
    a, b = gather(z[: len(x)], ctx), gather(z[len(x):], ctx)  # the global batch's rows
    loss = nt_xent(a, b, 0.5) + cluster_contrastive_loss(a[:, :4].softmax(1), b[:, :4].softmax(1), 1.0)
    losses.append(float(loss))
    return {"loss": loss}
"""


def test_two_processes_see_the_global_batchs_negatives_and_get_its_gradient(tmp_path):
    script = write_worker(tmp_path / "gather_worker.py", _GATHERED_LOSS, width=8, lr=0.5)
    one_and_two_ranks(script, tmp_path)
    one = torch.load(tmp_path / "one" / "result.pt")
    two = torch.load(tmp_path / "two" / "result.pt")
    # Every step's loss is the global batch's (a rank without the gather would see 8 rows, not 16)...
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=1e-5)
    # ... and the weights after 8 steps equal one process's: the gradient is the global batch's.
    for key in one["weights"]:
        torch.testing.assert_close(two["weights"][key], one["weights"][key], atol=1e-5, rtol=1e-4)
    torch.manual_seed(0)
    from torch import nn

    init = nn.Sequential(nn.Flatten(), nn.Linear(16, 8)).state_dict()
    assert not torch.allclose(init["1.weight"], one["weights"]["1.weight"])


def test_ccli_train_runs_under_torchrun_and_only_rank_0_writes(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "CCLI_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
         "-m", "ccli", "train", "--method", "cc", "--data", "digits", "--preset", "digits", "--epochs", "1",
         "--set", "eval_every=0", "-o", str(out), "-q"],
        env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines() == [str(out / "predictions.h5")]  # one line, from rank 0
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("epoch") for r in lines] == [1, None] and lines[-1]["final"]
    bad = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
         "-m", "ccli", "train", "--method", "cc", "--data", "digits", "--preset", "digits", "--batch-size", "127",
         "-o", str(tmp_path / "bad")], env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert bad.returncode != 0 and "batch_size=127 is not divisible by the 2 processes" in bad.stderr
    assert not (tmp_path / "bad").exists()


def test_ccli_train_across_two_nodes_matches_one_node_with_two_processes(tmp_path):
    """`torchrun --nnodes 2` (two launches on this host, each its own cache and output folder, as two
    machines would have): the same predictions as one node with two processes, and node 1 writes nothing."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    train = ["-m", "ccli", "train", "--method", "cc", "--data", "digits", "--preset", "digits", "--epochs", "1",
             "--set", "eval_every=0", "-q"]
    one_node = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
         *train, "-o", str(tmp_path / "one-node")],
        env={**env, "CCLI_CACHE": str(tmp_path / "cache-one")}, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert one_node.returncode == 0, one_node.stderr[-3000:]
    port = str(free_port())
    nodes = [subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
         "--node_rank", str(rank), "--master_addr", "127.0.0.1", "--master_port", port,
         *train, "-o", str(tmp_path / f"node{rank}")],
        env={**env, "CCLI_CACHE": str(tmp_path / f"cache-node{rank}")}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, cwd=REPO) for rank in range(2)]
    results = [p.communicate(timeout=300) for p in nodes]
    assert [p.returncode for p in nodes] == [0, 0], [err[-2000:] for _, err in results]
    assert results[0][0].strip().splitlines() == [str(tmp_path / "node0" / "predictions.h5")]
    assert results[1][0].strip() == ""  # node 1 prints no path and writes no run
    assert not (tmp_path / "node1").exists()
    assert not any(p.suffix == ".h5" for p in (tmp_path / "cache-node1").rglob("*"))
    import h5py

    with h5py.File(tmp_path / "one-node" / "predictions.h5") as a, h5py.File(tmp_path / "node0" / "predictions.h5") as b:
        assert np.array_equal(a["labels"][:], b["labels"][:])
        assert np.allclose(a["probs"][:], b["probs"][:], atol=1e-5)


def test_two_identical_pretrainings_at_once_train_once(tmp_path):
    """The key lock: the second process waits for the first and reuses its checkpoint."""
    out = tmp_path / "shared"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "CCLI_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "ccli", "pretrain", "--data", "digits", "--preset", "digits", "--epochs", "2",
           "--set", "knn_every=0", "-o", str(out)]
    procs = [subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in results]
    assert [o.strip() for o, _ in results] == [str(out / "checkpoint.pt")] * 2
    said = [" ".join(err.split()) for _, err in results]  # the console wraps long lines
    trained = [err for err in said if "pretraining simclr" in err]
    reused = [err for err in said if "completed by another process" in err]
    assert len(trained) == 1 and len(reused) == 1, [err for _, err in results]
    epochs = [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2]  # one run's lines, not two interleaved


def test_preset_paper_results_are_metadata_not_config(tmp_path):
    from ccli.config import load_preset, preset_metadata

    preset = tmp_path / "p.yaml"
    preset.write_text("epochs: 3  # PROPOSED\npaper_results:\n  table: CC Table 2\n  dataset: cifar10\n  acc: 0.79\n")
    assert load_preset("cc", str(preset)) == {"epochs": 3}
    assert preset_metadata("cc", str(preset)) == {
        "paper_results": {"table": "CC Table 2", "dataset": "cifar10", "acc": 0.79}}
