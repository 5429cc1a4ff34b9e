"""Row-sharded work under `torchrun`: each rank computes a contiguous shard, rank 0 writes one file.

`ccli embed` and `ccli neighbors` make artifacts whose rows are computed independently of each
other (a row's embedding, a query's neighbours among all rows). Under torchrun every rank runs the
same command; this module splits the rows and brings them back to rank 0, so the artifact is the
one a single process writes — same rows, same schema, same key (the world size is in no key).

The protocol, in the order it happens:

1. every rank validates the same inputs and derives the same key and output path *before* the
   process group is joined: bad input exits 2 on every rank with nothing computed or written;
2. rank 0 looks the key up in the store (under its lock) and tells the others: the result is
   already there (HIT), it must be computed (COMPUTE), or rank 0 failed (FAILED, with its exit code);
3. on COMPUTE each rank streams the blocks of its shard. Every step the ranks swap a small header
   (rows, start, or the error that stopped them), then rank 0 gathers the blocks (padded to the
   step's widest) and writes each at its rows. Memory is one block per rank, never a shard;
4. rank 0 tells the others whether the artifact was renamed into place (DONE) or not (FAILED).

A failure on any rank in step 3 reaches every rank at the next header swap, so all of them stop
together and rank 0's writer removes its temporary file: no rank waits on a dead peer, nothing is
left behind. In one process the same code runs with the exchange reduced to "write each block".
Rows reach rank 0 out of order, so the writer's datasets are created with `any_order=True`.

A rank that dies without a word (killed, out of memory) cannot take part in that: its peers learn
it from the process group (gloo: "Connection closed by peer") or from torchrun, which sends SIGTERM
to every other rank when one exits. Both become one `PeerLost` error (exit 1, one sentence), raised
like any other, so rank 0's writer and the store's lock are cleaned up on the way out. Only a rank 0
killed with SIGKILL leaves its hidden temp file behind (`ccli cache gc` removes it).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Callable, Iterator

import numpy as np

from ccli.engine.ddp import DistContext, init_distributed, shutdown
from ccli.errors import CcliError

Block = tuple[int, dict]  # (first row, {dataset name: array [rows, ...]})
Write = Callable[[int, dict], None]

_HIT, _COMPUTE, _DONE, _FAILED = "hit", "compute", "done", "failed"


class PeerFailed(CcliError):
    """Another rank failed; it printed its own message, so this rank exits with its code quietly."""

    said_elsewhere = True

    def __init__(self, rank: int, exit_code: int, message: str):
        super().__init__(f"rank {rank} failed: {message}")
        self.exit_code = exit_code


class PeerLost(CcliError):
    """Another rank died without a word (the process group broke, or torchrun sent SIGTERM)."""

    exit_code = 1


# Set once this process knows the command failed: a SIGTERM that torchrun sends while the failure
# unwinds (a temp file being removed) must not interrupt that clean-up.
_stopping = threading.Event()


def _on_sigterm(signum, frame) -> None:
    if _stopping.is_set():
        return
    _stopping.set()
    raise PeerLost("stopped by SIGTERM (torchrun sends it to every process when one of them fails); "
                   "this process wrote nothing.")


@contextlib.contextmanager
def _sigterm_raises(ctx: DistContext) -> Iterator[None]:
    """Under torchrun, SIGTERM raises PeerLost (so `finally` blocks run) instead of killing outright.

    After a failure SIGTERM is ignored until the process exits (moments later: it is failing).
    """
    if not ctx.distributed or threading.current_thread() is not threading.main_thread():
        yield
        return
    _stopping.clear()
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    except BaseException:
        # The handler stays, now ignoring SIGTERM: torchrun's signal usually comes after the
        # process group already told us, and must not kill the process before it says why.
        _stopping.set()
        raise
    signal.signal(signal.SIGTERM, previous)


def _collective(fn, *args, **kwargs):
    """A torch.distributed call; a broken process group (a peer died) becomes PeerLost."""
    import torch

    try:
        return fn(*args, **kwargs)
    except torch.OutOfMemoryError:
        raise
    except RuntimeError as exc:  # gloo raises a plain RuntimeError; NCCL's DistBackendError is one too
        _stopping.set()
        text = " ".join(str(exc).split())
        detail = text.split("] ", 1)[-1].split(". ")[0].rstrip(".")  # gloo prefixes its source location
        raise PeerLost(f"another process of this torchrun stopped without finishing (the process group broke: "
                       f"{detail}); this process stopped too and wrote nothing.") from exc


def shard_range(n: int, world_size: int, rank: int, align: int = 1) -> tuple[int, int]:
    """Rows [start, stop) of `rank`: contiguous, in rank order, starting on multiples of `align`.

    With align 1 these are rows [r·N/W, (r+1)·N/W). A larger align gives each rank whole blocks
    of the one-process grid (embed's batches: its augmented views are seeded per batch start).
    """
    blocks = -(-n // align)
    lo, hi = rank * blocks // world_size, (rank + 1) * blocks // world_size
    return min(n, lo * align), min(n, hi * align)


@contextlib.contextmanager
def joined(device_spec: str = "auto") -> Iterator[tuple[DistContext, object]]:
    """Join torchrun's process group for one command (one process: nothing to join); leave it after.

    A group someone else joined (a method embedding inside its own run) is theirs to leave.
    """
    import torch.distributed as dist

    ours = not (dist.is_available() and dist.is_initialized())
    ctx, device = init_distributed(device_spec)
    finished = False
    try:
        with _sigterm_raises(ctx):
            yield ctx, device
        finished = True
    finally:
        if ours:
            shutdown(finished)


def run_sharded(ctx: DistContext, n: int, produce: Callable[[int, int], Iterator[Block]],
                main: Callable[[Callable[[Write], None]], bool], align: int = 1) -> bool:
    """Compute rows [0, n) across the ranks; returns whether rank 0 found the result cached.

    `produce(start, stop)` yields the blocks of rows [start, stop) (lazily: a cache hit computes
    nothing). `main(gather)` runs on rank 0 only: it returns True on a cache hit, else it calls
    `gather(write)` once, which runs every rank's shard and calls `write(start, arrays)` on rank 0
    for every block (in no particular row order), then finishes the artifact and returns False.
    """
    if not ctx.distributed:
        def gather_alone(write: Write) -> None:
            for start, arrays in produce(0, n):
                write(start, arrays)

        return main(gather_alone)
    lo, hi = shard_range(n, ctx.world_size, ctx.rank, align)
    if ctx.is_main:
        return _run_main(ctx, lambda: produce(lo, hi), main)
    said = _hear(ctx)
    if said[0] == _HIT:
        return True
    if said[0] == _FAILED:
        _stopping.set()
        raise PeerFailed(0, said[1], said[2])
    _exchange(ctx, produce(lo, hi), None)
    said = _hear(ctx)
    if said[0] == _FAILED:
        _stopping.set()
        raise PeerFailed(0, said[1], said[2])
    return False


def _run_main(ctx: DistContext, blocks: Callable[[], Iterator[Block]], main) -> bool:
    phase = {"told": False, "exchanged": False}

    def gather(write: Write) -> None:
        _say(ctx, _COMPUTE)
        phase["told"] = True
        _exchange(ctx, blocks(), write)  # a failure here is raised on every rank at once
        phase["exchanged"] = True

    try:
        hit = main(gather)
    except (PeerFailed, PeerLost):
        raise
    except BaseException as exc:
        _stopping.set()
        # Tell the others unless they already know (a failure inside the exchange reached them).
        if not phase["told"] or phase["exchanged"]:
            _say(ctx, _FAILED, getattr(exc, "exit_code", 1), _one_line(exc))
        raise
    _say(ctx, _DONE if phase["told"] else _HIT)
    return hit


def _say(ctx: DistContext, what: str, code: int = 0, message: str = "") -> None:
    import torch.distributed as dist

    _collective(dist.broadcast_object_list, [(what, code, message)], src=0)


def _hear(ctx: DistContext) -> tuple:
    import torch.distributed as dist

    box = [None]
    _collective(dist.broadcast_object_list, box, src=0)
    return box[0]


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _exchange(ctx: DistContext, blocks: Iterator[Block], write: Write | None) -> None:
    """Every rank's blocks to rank 0, one block per rank per step, until every shard is done."""
    import torch
    import torch.distributed as dist

    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    failure: BaseException | None = None
    exhausted = False
    while True:
        item = None
        if failure is None and not exhausted:
            try:
                item = next(blocks, None)
            except Exception as exc:  # noqa: BLE001 - reported to every rank, then raised here
                failure = exc
            exhausted = item is None
        header = _header(item, failure)
        headers: list = [None] * ctx.world_size
        _collective(dist.all_gather_object, headers, header)
        failed = [(rank, h["error"]) for rank, h in enumerate(headers) if h["error"] is not None]
        if failed:
            _stopping.set()  # from here on a SIGTERM (torchrun tidying up) must not cut the clean-up short
            if failure is not None:
                raise failure
            rank, (code, message) = failed[0]
            raise PeerFailed(rank, code, message)
        active = [rank for rank, h in enumerate(headers) if h["rows"]]
        if not active:
            return
        spec = headers[active[0]]["spec"]
        width = max(headers[rank]["rows"] for rank in active)
        received = {}
        for name, (shape, dtype) in spec.items():
            local = np.zeros((width, *shape), dtype=dtype)
            if item is not None:
                local[: len(item[1][name])] = item[1][name]
            tensor = torch.from_numpy(local).to(device)
            parts = [torch.empty_like(tensor) for _ in range(ctx.world_size)] if ctx.is_main else None
            _collective(dist.gather, tensor, parts, dst=0)
            received[name] = parts
        if write is not None and failure is None:
            try:
                for rank in active:
                    rows = headers[rank]["rows"]
                    write(headers[rank]["start"], {name: received[name][rank][:rows].cpu().numpy() for name in spec})
            except Exception as exc:  # noqa: BLE001 - rank 0's write failure stops everyone next step
                failure = exc


def _header(item: Block | None, failure: BaseException | None) -> dict:
    if failure is not None:
        return {"rows": 0, "start": 0, "spec": None, "error": (getattr(failure, "exit_code", 1), _one_line(failure))}
    if item is None:
        return {"rows": 0, "start": 0, "spec": None, "error": None}
    start, arrays = item
    spec = {name: (tuple(a.shape[1:]), np.asarray(a).dtype.str) for name, a in arrays.items()}
    rows = {len(a) for a in arrays.values()}
    if len(rows) != 1:
        raise ValueError(f"a block's arrays disagree on their number of rows: {sorted(rows)}")
    return {"rows": rows.pop(), "start": int(start), "spec": spec, "error": None}
