"""`ccli embed` and `ccli neighbors` under torchrun (issue 17): two gloo ranks write the artifact one
process writes — same rows, same key, nothing else on disk — and a failure on any rank stops both."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from ccli.engine.shards import shard_range
from tests.ddp_launch import REPO, free_port
from tests.test_neighbors import write_features


def test_shards_are_contiguous_in_rank_order_and_start_on_whole_blocks():
    # align 1: rows [r·N/W, (r+1)·N/W)
    assert [shard_range(10, 3, r) for r in range(3)] == [(0, 3), (3, 6), (6, 10)]
    # digits under 2 ranks with embed's 512-image batches: 4 batches, 2 each; the last is short
    assert [shard_range(1797, 2, r, align=512) for r in range(2)] == [(0, 1024), (1024, 1797)]
    # more ranks than blocks: some shards are empty, none overlap
    assert [shard_range(5, 4, r, align=4) for r in range(4)] == [(0, 0), (0, 4), (4, 4), (4, 5)]


def _env(cache: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "CCLI_CACHE": str(cache)}


def ccli_one(cache: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ccli", *map(str, args)], env=_env(cache), capture_output=True,
                          text=True, timeout=300, cwd=REPO)


def ccli_two(cache: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
         "-m", "ccli", *map(str, args)], env=_env(cache), capture_output=True, text=True, timeout=300, cwd=REPO)


def files_under(folder: Path) -> list[str]:
    """Every file (hidden ones too: temp files, locks) below `folder`, relative."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def assert_same_artifact(a: Path, b: Path) -> None:
    """Same datasets with the same values and checksums, same root attributes but the creation time."""
    with h5py.File(a) as fa, h5py.File(b) as fb:
        names_a, names_b = [], []
        fa.visit(lambda n: names_a.append(n) if isinstance(fa[n], h5py.Dataset) else None)
        fb.visit(lambda n: names_b.append(n) if isinstance(fb[n], h5py.Dataset) else None)
        assert names_a == names_b
        for name in names_a:
            assert fa[name].dtype == fb[name].dtype and fa[name].shape == fb[name].shape, name
            if fa[name].dtype.kind == "f":
                np.testing.assert_allclose(fb[name][:], fa[name][:], rtol=1e-6, atol=1e-6, err_msg=name)
            else:
                np.testing.assert_array_equal(fb[name][:], fa[name][:], err_msg=name)
        skip = {"created", "attrs_checksum"}
        assert {k: str(v) for k, v in fa.attrs.items() if k not in skip} == \
            {k: str(v) for k, v in fb.attrs.items() if k not in skip}


@pytest.mark.slow  # ~45 s on a lightly loaded 2-core machine: a pretraining, then 3 interpreters embedding
def test_two_ranks_embed_the_one_process_artifact_under_its_key(tmp_path):
    done = ccli_one(tmp_path / "cache", "pretrain", "--data", "digits", "--preset", "digits", "--epochs", "1",
                    "--set", "knn_every=0", "-o", tmp_path / "run", "-q")
    assert done.returncode == 0, done.stderr
    args = ["embed", done.stdout.strip(), "--views", "clean,weak,strong", "--batch-size", "256", "-q"]
    one, two = ccli_one(tmp_path / "one", *args), ccli_two(tmp_path / "two", *args)
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr[-3000:]
    single = Path(one.stdout.strip())
    assert two.stdout.strip().splitlines() == [str(tmp_path / "two" / "features" / single.name)]  # rank 0 only
    assert_same_artifact(single, tmp_path / "two" / "features" / single.name)
    with h5py.File(single) as f:
        assert sorted(f["views"]) == ["strong", "weak"] and f["features"].shape == (1797, 128)
    assert files_under(tmp_path / "two") == [f"features/{single.name}"]  # no shard, temp or lock file


@pytest.fixture(scope="module")
def features(tmp_path_factory) -> Path:
    """1,797 × 32 clustered rows with weak and strong views; the last 97 rows repeat the first 97, so
    tied scores straddle the two ranks' shards (rows 0–898 and 899–1796)."""
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((10, 32)) * 2
    labels = rng.integers(0, 10, 1797)
    x = (centres[labels] + rng.standard_normal((1797, 32))).astype(np.float32)
    x[1700:], labels[1700:] = x[:97], labels[:97]
    views = {v: x + 0.3 * rng.standard_normal(x.shape).astype(np.float32) for v in ("weak", "strong")}
    return write_features(tmp_path_factory.mktemp("features") / "f.h5", x, labels, views=views, tag="sharded")


# faiss shards whole search calls (--block-rows 512: two per rank), torch any rows (ccli.neighbors.knn.shard_grid)
@pytest.mark.parametrize("extra", [["-k", "10"], ["--metric", "l2", "-k", "7"],
                                   ["--backend", "faiss", "--block-rows", "512", "-k", "9"]],
                         ids=["cosine", "l2", "faiss"])
def test_two_ranks_find_the_nearest_neighbours_of_one_process(features, extra, tmp_path):
    single = features
    args = ["neighbors", single, *extra, "-q"]
    one, two = ccli_one(tmp_path / "one", *args), ccli_two(tmp_path / "two", *args)
    assert one.returncode == 0 and two.returncode == 0, (one.stderr, two.stderr[-3000:])
    made = Path(one.stdout.strip())
    assert two.stdout.strip() == str(tmp_path / "two" / "neighbors" / made.name)  # the same key
    with h5py.File(made) as a, h5py.File(two.stdout.strip()) as b:
        np.testing.assert_array_equal(b["indices"][:], a["indices"][:])  # ties too
        assert a["indices"][5, 0] == 1705 and a["indices"][1705, 0] == 5  # each duplicate finds its twin first
        np.testing.assert_allclose(b["scores"][:], a["scores"][:], rtol=1e-6, atol=1e-6)
        assert b["indices"].shape == (1797, int(extra[-1]))
    assert_same_artifact(made, Path(two.stdout.strip()))
    assert files_under(tmp_path / "two") == [f"neighbors/{made.name}"]


def test_multi_view_shares_its_search_and_reranks_on_rank_0(features, tmp_path):
    root, single = tmp_path, features
    args = ["neighbors", single, "-k", "5", "--multi-view", "--filter-head", "kmeans", "-q"]
    one, two = ccli_one(root / "m1", *args), ccli_two(root / "m2", *args)
    assert one.returncode == 0 and two.returncode == 0, (one.stderr, two.stderr[-3000:])
    made = Path(one.stdout.strip())
    assert_same_artifact(made, root / "m2" / "neighbors" / made.name)
    with h5py.File(made) as f:
        assert f["steps/clean/indices"].shape == (1797, 20) and f["indices"].shape == (1797, 5)
    assert files_under(root / "m2") == [f"neighbors/{made.name}"]


def test_bad_input_and_bad_values_leave_nothing_under_torchrun(features, tmp_path):
    single = features
    bad = ccli_two(tmp_path / "c1", "neighbors", single, "--backend", "faiss", "--index", "hnsw")
    assert bad.returncode != 0
    assert "index=hnsw cannot be split across the 2 processes of this torchrun" in " ".join(bad.stderr.split())
    assert not (tmp_path / "c1").exists()
    # Rows of NaN are found when rank 0 reads the matrix in the store's lock: it tells rank 1, which stops
    # quietly, so the sentence is said once.
    nan = tmp_path / "nan.h5"
    with h5py.File(single) as f:
        x = f["features"][:]
    x[1500] = np.nan
    write_features(nan, x)
    failed = ccli_two(tmp_path / "c2", "neighbors", nan, "-k", "5")
    assert failed.returncode != 0
    assert "NaN or inf values in 1 of 1797 rows" in " ".join(failed.stderr.split())
    assert failed.stderr.count("ccli: error:") == 1, failed.stderr[-3000:]
    assert not (tmp_path / "c2").exists()  # no neighbours, temp or lock file, not even the folder


_FAILING_RANK = """
import sys
import numpy as np
from ccli.engine.shards import joined, run_sharded
from ccli.errors import CcliError
from ccli.store import ArtifactWriter

out, failing = sys.argv[1], int(sys.argv[2])


def produce(lo, hi):
    for start in range(lo, hi, 4):
        if rank == failing and start > lo:  # the second block of the failing rank's shard
            raise CcliError(f"rank {rank} cannot compute rows from {start}")
        yield start, {"features": np.full((min(4, hi - start), 2), start, dtype=np.float32)}


def main(gather):
    with ArtifactWriter(out, "features", "k", {}) as w:
        w.create("features", (16, 2), np.float32, any_order=True)
        gather(lambda start, block: w.write_rows("features", start, block["features"]))
        w.write("labels", np.zeros(16, dtype=np.int64))
        w.write("index", np.arange(16))
    return False


try:
    with joined("cpu") as (ctx, dev):
        rank = ctx.rank
        run_sharded(ctx, 16, produce, main)
except CcliError as exc:
    print(("quiet " if getattr(exc, "said_elsewhere", False) else "error ") + str(exc), file=sys.stderr)
    sys.exit(exc.exit_code)
"""


@pytest.mark.parametrize("failing", [0, 1])
def test_a_rank_that_fails_mid_stream_stops_every_rank_and_rank_0_leaves_no_temp_file(tmp_path, failing):
    script = tmp_path / "worker.py"
    script.write_text(_FAILING_RANK)
    out = tmp_path / "out" / "f.h5"
    out.parent.mkdir()
    port = str(free_port())
    procs = []
    for rank in range(2):
        env = {**_env(tmp_path / "cache"), "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
        procs.append(subprocess.Popen([sys.executable, str(script), str(out), str(failing)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [1, 1], errs
    # Shards are rows 0-7 and 8-15; the failing rank says why, the other stops quietly.
    where = 4 if failing == 0 else 12
    assert f"error rank {failing} cannot compute rows from {where}" in errs[failing], errs
    assert f"quiet rank {failing} failed: rank {failing} cannot compute rows from {where}" in errs[1 - failing], errs
    assert list(out.parent.iterdir()) == []


def _rank_pid(launcher: int, local_rank: int) -> int | None:
    """The pid of torchrun's worker with LOCAL_RANK=`local_rank` (its child), once it runs."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (proc / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == launcher and f"LOCAL_RANK={local_rank}".encode() in environ:
            return int(proc.name)
    return None


@pytest.mark.parametrize("victim", [1, 0])
def test_a_rank_killed_mid_search_makes_torchrun_exit_1_with_one_sentence(tmp_path, victim):
    """SIGKILL on one rank while rank 0's temp file exists (the search is under way).

    Rank 1 killed: rank 0 learns it from the process group (or torchrun's SIGTERM), says so once,
    and its writer and lock leave nothing. Rank 0 killed: rank 1 says so; rank 0 could not clean
    up, so its hidden temp and lock files stay until `ccli cache gc` removes them.
    """
    import signal
    import time

    x = np.random.default_rng(0).standard_normal((40_000, 32)).astype(np.float32)
    features = write_features(tmp_path / "x.h5", x)
    cache = tmp_path / "cache"
    launcher = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
         "-m", "ccli", "neighbors", str(features), "-k", "10", "--block-rows", "256", "-q"],
        env=_env(cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    deadline = time.monotonic() + 240
    while not list(cache.glob("neighbors/.*.tmp-*")) and launcher.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    pid = _rank_pid(launcher.pid, victim)
    assert pid is not None and launcher.poll() is None, "the search finished before a rank could be killed"
    os.kill(pid, signal.SIGKILL)
    out, err = launcher.communicate(timeout=240)
    assert launcher.returncode == 1
    assert out == ""  # no artifact path printed
    said = [line for line in err.splitlines() if line.startswith("ccli: error:")]
    assert len(said) == 1, err[-3000:]
    assert said[0].endswith("this process stopped too and wrote nothing.") or "SIGTERM" in said[0], said
    if victim == 1:
        assert files_under(cache) == []
    else:
        lock, temp = files_under(cache)  # .KEY.h5.lock, .KEY.h5.tmp-PID-RANDOM: hidden, one key
        assert lock.startswith("neighbors/.") and lock.endswith(".h5.lock")
        assert temp.startswith(lock[: -len(".lock")] + ".tmp-")
        gc = ccli_one(cache, "cache", "gc", "-q")
        assert gc.returncode == 0, gc.stderr
        assert files_under(cache) == []
