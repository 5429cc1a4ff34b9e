"""Distributed data parallel under `torchrun`: NCCL on GPUs, gloo on CPU.

`torchrun --nproc-per-node N -m ccli pretrain …` sets RANK, WORLD_SIZE and LOCAL_RANK; the
engine then joins the process group, wraps the trainable module in DDP, gives each rank its
slice of every global batch (`--batch-size` is the global batch), and lets only rank 0 write
checkpoints, metrics and progress. Without those variables everything runs in one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(device_spec: str = "auto"):
    """Join the process group described by torchrun's environment; returns (DistContext, device)."""
    import torch
    import torch.distributed as dist

    from ccli.engine.device import resolve_device

    world = env_world_size()
    if world <= 1:
        return DistContext(), resolve_device(device_spec)
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    wants_cuda = device_spec in ("auto", "cuda") or device_spec.startswith("cuda")
    if wants_cuda and torch.cuda.is_available():
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device = resolve_device("cpu" if device_spec == "auto" else device_spec)
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistContext(rank, world, local_rank), device


def shutdown(finished: bool = True) -> None:
    """Leave the process group; after a finished run every rank leaves it together.

    A rank that tore its group down while its peer was still busy, or while a DDP wrapper of a
    finished stage still held the group, could abort at interpreter exit ("terminate called
    without an active exception", seen in about one run in ten on a loaded 2-core machine).
    So the wrappers are collected first, and a finished run meets at a barrier before the
    group goes. A failed run skips the barrier: its peer may never arrive.
    """
    import gc

    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        gc.collect()
        if finished:
            dist.barrier()
        dist.destroy_process_group()
        gc.collect()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        import torch.distributed as dist

        dist.barrier()


def all_gather_cat(tensor, ctx: DistContext):
    """Concatenate a tensor's rows from every rank (no gradient), rank order; identity in one process."""
    if not ctx.distributed:
        return tensor
    import torch
    import torch.distributed as dist

    parts = [torch.empty_like(tensor) for _ in range(ctx.world_size)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


def all_reduce_mean(value: float, ctx: DistContext, device) -> float:
    if not ctx.distributed:
        return value
    import torch
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / ctx.world_size


def broadcast_flag(flag: bool, ctx: DistContext, device) -> bool:
    """True on every rank if it is true on any rank (used to stop all ranks on a NaN loss)."""
    if not ctx.distributed:
        return flag
    import torch
    import torch.distributed as dist

    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def env_rank() -> int:
    """This process's rank under torchrun (0 without it): decides who writes a run's files."""
    return int(os.environ.get("RANK", "0"))


def all_gather_with_grad(tensor, ctx: DistContext):
    """Rows of `tensor` from every rank, in rank order, with gradients flowing back to each rank.

    Contrastive losses use it so that a 2-process run sees the negatives of the global batch. The
    backward pass sums every rank's gradient for this rank's rows (an all-reduce, then our slice);
    with DDP's gradient averaging a loss that is the same on every rank then gets exactly the
    gradient of one process holding the whole batch. Identity in one process.
    """
    if not ctx.distributed:
        return tensor
    return _GatherWithGrad.apply(tensor.contiguous(), ctx.rank, ctx.world_size)


def _gather_function():
    import torch
    import torch.distributed as dist

    class GatherWithGrad(torch.autograd.Function):
        @staticmethod
        def forward(fn_ctx, tensor, rank: int, world_size: int):
            fn_ctx.rank, fn_ctx.rows = rank, tensor.shape[0]
            parts = [torch.empty_like(tensor) for _ in range(world_size)]
            dist.all_gather(parts, tensor)
            return torch.cat(parts, dim=0)

        @staticmethod
        def backward(fn_ctx, grad):
            grad = grad.contiguous()
            dist.all_reduce(grad)  # gloo has no reduce_scatter; the sum then our slice is the same
            start = fn_ctx.rank * fn_ctx.rows
            return grad[start : start + fn_ctx.rows], None, None

    return GatherWithGrad


class _LazyGather:
    """Builds the autograd Function on first use, so importing this module never imports torch."""

    _fn = None

    @classmethod
    def apply(cls, *args):
        if cls._fn is None:
            cls._fn = _gather_function()
        return cls._fn.apply(*args)


_GatherWithGrad = _LazyGather


def broadcast_from_main(tensor, ctx: DistContext):
    """Rank 0's `tensor` on every rank (in place; same shape and dtype everywhere): for before_epoch state."""
    if ctx.distributed:
        import torch.distributed as dist

        dist.broadcast(tensor, src=0)
    return tensor
