"""The one training loop every method uses.

A method hands the engine three things and gets a trained model and a run folder back:

1. a `Task`: `model` (everything to checkpoint and move to the device: networks, EMA targets,
   queues as buffers), `trainable` (the sub-module the optimiser updates; it is DDP-wrapped and
   optionally compiled), `loss_step(net, batch, ctx) -> {"loss": tensor, other scalars}` which
   must call `net` (the wrapped `trainable`) exactly once per step so DDP syncs gradients,
   optional `before_epoch(ctx)` (runs on every rank before an epoch's first step, after the RNG
   is reseeded: refresh state from the whole dataset, e.g. a graph or a target distribution;
   compute on rank 0 and `ccli.engine.ddp.broadcast_from_main` it, and keep what must survive
   a resume in the model's buffers), optional `after_step(ctx)` (runs after the optimiser
   step: EMA updates), optional `embed(images) -> features` (for the kNN monitor) and optional
   `epoch_metrics(device) -> dict` (task-specific scores of the model in eval mode, e.g. a
   cluster head's ACC/NMI/ARI, merged into the epoch's record every `eval_every` epochs and
   after the last one);
2. a data path (`ccli.engine.datapath`), whose `batches(epoch)` yields {"views", "index",
   "labels"} (+ "neighbor_views", "neighbor_index" for a neighbour-pair path);
3. an `EngineConfig` (the `engine` section of every training config: optimiser, schedule,
   epochs, precision, …), the run's seed, and a `RunFiles`.

Stages: a run may train several stages in turn (SCAN → self-label, autoencoder → clustering).
Each stage is one `fit` call with its own `stage` name and checkpoint file; every metrics line
carries the stage, and metrics.jsonl is appended to, never truncated: a stage that starts (or
resumes) replaces only its own earlier lines.

The engine then does: seeding, device placement, channels_last, bf16 autocast on GPU,
`torch.compile`, DDP (under torchrun), the per-step LR schedule, NaN detection, an atomic
checkpoint at the end of every epoch, exact `--resume`, one JSON line per epoch in
metrics.jsonl, rich progress on stderr, the kNN monitor when labels exist, and the task's own
`epoch_metrics`. Neither evaluation changes the training: both run without gradients in eval
mode (no BatchNorm statistics move) and the global RNG is reseeded at the next epoch.

Determinism: the global RNG is reseeded from (seed, epoch, rank) at the start of every epoch
and the data paths derive their randomness from the same numbers, so resuming from the
checkpoint of epoch e gives the same weights as an uninterrupted run (on CPU; cuDNN
kernels on GPU are not bitwise deterministic).
"""

from __future__ import annotations


import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from ccli import log
from ccli.errors import BadInput, CcliError

# Config keys that change how fast or where a run happens, not what it computes: they are
# left out of run keys, and a resumed run may change them freely. Matched on a dotted key's
# last part, so `engine.threads` and a flat `threads` are both runtime keys.
RUNTIME_KEYS = frozenset({"device", "compile", "workers", "threads", "knn_every", "knn_samples", "knn_k", "channels_last",
                          "eval_every", "eval_batch_size"})


def is_runtime_key(key: str) -> bool:
    return key.rsplit(".", 1)[-1] in RUNTIME_KEYS


@dataclass
class EngineConfig:
    """The `engine` section of every training config: declared here once, read by the loop.

    Methods change defaults with `ccli.config.section(lambda: EngineConfig(epochs=…, …))`;
    presets and `--set` may spell the keys flat (`lr`) or dotted (`engine.lr`).
    """

    epochs: int = 100
    batch_size: int = 256  # the global batch (split across ranks under torchrun)
    optimizer: str = "sgd"  # sgd | adam | adamw | lars
    lr: float = 0.05
    weight_decay: float = 1e-4
    momentum: float = 0.9
    schedule: str = "cosine"  # cosine | constant
    warmup_epochs: float = 0.0
    final_lr: float = 0.0
    grad_clip: float = 0.0  # max gradient norm; 0 disables clipping
    precision: str = "auto"  # auto (bf16 on GPU) | bf16 | fp32
    channels_last: bool = True  # only applied on CUDA, where it pays
    compile: bool = False
    knn_every: int = 1  # epochs between kNN-monitor evaluations; 0 disables
    knn_samples: int = 5000
    knn_k: int = 20
    eval_every: int = 1  # epochs between Task.epoch_metrics evaluations (and after the last); 0 disables
    threads: int = 0  # torch intra-op threads on CPU; 0 keeps torch's default
    workers: int = -1  # DataLoader workers for augment_on=cpu; -1 = cores − 1 (≤ 8)
    augment_on: str = "gpu"  # gpu: batched on the training device (CPU tensors too) | cpu: per-sample workers

    def __post_init__(self) -> None:
        # A run of zero epochs would write an untrained checkpoint that counts as complete.
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, int) and not isinstance(value, bool) and value < 1:
                raise BadInput(f"{name}={value} must be at least 1.")
        for name in ("warmup_epochs", "grad_clip", "weight_decay"):
            value = getattr(self, name)
            if isinstance(value, (int, float)) and not value >= 0:
                raise BadInput(f"{name}={value} must be 0 or more.")


@dataclass
class StepContext:
    epoch: int  # 1-based
    step: int  # global optimiser step, 0-based, counted across epochs
    total_steps: int
    steps_per_epoch: int
    device: Any
    dist: Any
    lr: float = 0.0
    stage: str = ""


@dataclass
class Task:
    model: Any  # torch.nn.Module holding all state
    trainable: Any  # the optimised sub-module (may be `model` itself)
    loss_step: Callable[[Any, dict, StepContext], Mapping[str, Any]]
    before_epoch: Optional[Callable[[StepContext], None]] = None  # ctx.step = the epoch's first step
    after_step: Optional[Callable[[StepContext], None]] = None
    embed: Optional[Callable[[Any], Any]] = None
    epoch_metrics: Optional[Callable[[Any], Mapping[str, float]]] = None  # device -> scores merged into the record
    param_groups: Optional[list] = None  # optimiser param groups; default: trainable's parameters


@dataclass
class RunFiles:
    """Where a run writes: the checkpoint, the metrics log and the effective config."""

    checkpoint: Path
    metrics: Path
    config: Path

    @classmethod
    def for_output(cls, out: Path) -> "RunFiles":
        """`out` ending in .pt is the checkpoint file (metrics/config beside it, named after its
        stem); anything else is a run folder holding checkpoint.pt, metrics.jsonl, config.yaml."""
        out = Path(out)
        if out.suffix == ".pt":
            stem = out.with_suffix("")
            return cls(out, stem.parent / f"{stem.name}.metrics.jsonl", stem.parent / f"{stem.name}.config.yaml")
        return cls(out / "checkpoint.pt", out / "metrics.jsonl", out / "config.yaml")


@dataclass
class FitResult:
    checkpoint: Path
    history: list = field(default_factory=list)
    resumed_from: int = 0


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two config records (ignoring runtime-only keys)."""
    from ccli.config import flat_config

    saved, current = flat_config(saved), flat_config(current)
    keys = {k for k in set(saved) | set(current) if not is_runtime_key(k)}
    return sorted(k for k in keys if _plain(saved.get(k)) != _plain(current.get(k)))


def check_resume(checkpoint: Path, config_record: Mapping[str, Any]) -> dict[str, Any]:
    """Load a checkpoint to resume and make sure it was made with the same config, or BadInput."""
    from ccli.config import flat_config
    from ccli.engine import checkpoint as ckpt

    state = ckpt.load_checkpoint(checkpoint, "the checkpoint to resume")
    saved = state.get("config", {})
    diff = config_differences(saved, config_record)
    if diff:
        old, new = flat_config(saved), flat_config(config_record)
        shown = ", ".join(f"{k} ({old.get(k)!r} → {new.get(k)!r})" for k in diff[:6])
        more = f" and {len(diff) - 6} more" if len(diff) > 6 else ""
        raise BadInput(f"the checkpoint {checkpoint} to resume was made with a different config: {shown}{more}.")
    return state


def _plain(value):
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


_clock = time.perf_counter  # the loop's clock (tests replace it with a fake one)
ESTIMATE_STEPS = 5  # steps timed (after the first, which pays for warm-up) before the run estimate
ESTIMATE_WARN_S = 3600.0  # a run predicted to take longer than this is announced
ETA_WINDOW = 5  # epochs in the moving mean behind the per-epoch ETA


def format_duration(seconds: float) -> str:
    """45s, 3m12s, 2h05m: the ETA's spelling (rounded to whole seconds)."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def remaining_time(epoch_times: list[float], epochs_left: int, window: int = ETA_WINDOW) -> float:
    """Seconds left: the mean of the last `window` measured epoch times × the epochs still to train."""
    recent = [t for t in epoch_times if t is not None][-window:]
    if not recent or epochs_left <= 0:
        return 0.0
    return sum(recent) / len(recent) * epochs_left


def run_estimate(seconds_per_step: float, steps_per_epoch: int, epochs: int) -> float:
    """Seconds a run of `epochs` epochs × `steps_per_epoch` steps takes at the measured step time."""
    return seconds_per_step * steps_per_epoch * epochs


def estimate_message(seconds: float, images_per_s: float, epochs: int, steps_per_epoch: int) -> str:
    return (f"this run will take about {seconds / 3600:.1f} h at the measured {images_per_s:.0f} img/s "
            f"({epochs} epochs × {steps_per_epoch} steps); lower epochs or choose a shorter preset to shorten it")


def _rng_seed(seed: int, epoch: int, rank: int) -> int:
    from ccli.engine.datapath import mix_seed

    return mix_seed(seed, epoch, rank, 11)


def fit(task: Task, data, cfg: EngineConfig, files: RunFiles, *, config_record: Mapping[str, Any], seed: int = 0,
        stage: str = "", checkpoint_extra: Mapping[str, Any] | None = None, resume: bool = False, monitor=None,
        dist=None, device=None, later_epochs: int = 0, announce: bool = True) -> FitResult:
    """Train `task` on `data` for cfg.epochs epochs, checkpointing after each; see the module doc.

    `later_epochs`: epochs of the stages still to come after this one (the ETA counts them at this
    stage's epoch time); `announce`: this is the run's first stage, which prints the run estimate
    when its first timed steps predict more than an hour.
    """
    import torch

    from ccli.engine import checkpoint as ckpt
    from ccli.engine.ddp import DistContext, all_reduce_mean, broadcast_flag
    from ccli.engine.device import autocast, autocast_dtype, resolve_device
    from ccli.engine.optim import build_optimizer
    from ccli.engine.progress import EpochProgress
    from ccli.engine.schedule import lr_at, set_lr

    dist = dist or DistContext()
    device = device or resolve_device("auto")
    steps_per_epoch = len(data)
    if steps_per_epoch == 0:
        raise BadInput(f"--batch-size {cfg.batch_size} leaves no complete batch for this dataset.")
    total_steps = cfg.epochs * steps_per_epoch
    warmup_steps = int(round(cfg.warmup_epochs * steps_per_epoch))
    amp_dtype = autocast_dtype(device, cfg.precision)

    model = task.model.to(device)
    channels_last = cfg.channels_last and device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    groups = task.param_groups if task.param_groups is not None else list(task.trainable.parameters())
    optimizer = build_optimizer(cfg.optimizer, groups, cfg.lr, cfg.weight_decay, cfg.momentum)

    start_epoch, step, history = 0, 0, []
    if resume:
        state = check_resume(files.checkpoint, config_record)
        try:
            task.model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise BadInput(f"--resume {files.checkpoint} does not fit this model ({str(exc).splitlines()[0]}).") from exc
        start_epoch, step, history = int(state["epoch"]), int(state["step"]), list(state.get("history", []))
        if dist.is_main and start_epoch < cfg.epochs:
            where = f"stage {stage}, " if stage else ""
            log.info(f"resuming from {where}epoch {start_epoch} of {cfg.epochs} ({files.checkpoint})")
    if dist.is_main:
        _replace_stage_lines(files.metrics, stage, history)

    net = task.trainable
    if dist.distributed:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        net = torch.compile(net)

    def save(epoch: int, complete: bool) -> None:
        payload = {
            "epoch": epoch, "step": step, "complete": complete, "config": dict(config_record),
            "model": task.model.state_dict(), "optimizer": optimizer.state_dict(), "history": history,
            **dict(checkpoint_extra or {}),
        }
        ckpt.save_atomic(payload, files.checkpoint)

    def step_context(epoch: int, lr: float) -> StepContext:
        return StepContext(epoch, step, total_steps, steps_per_epoch, device, dist, lr, stage)

    with EpochProgress(dist.is_main and log.verbosity() >= 1) as progress:
        for epoch in range(start_epoch + 1, cfg.epochs + 1):
            torch.manual_seed(_rng_seed(seed, epoch, dist.rank))
            if task.before_epoch is not None:
                task.before_epoch(step_context(epoch, lr_at(step, total_steps, cfg.lr, warmup_steps, cfg.final_lr,
                                                            cfg.schedule)))
            task.model.train()
            progress.start(epoch, cfg.epochs, steps_per_epoch)
            sums: dict[str, float] = {}
            pending: dict[str, Any] = {}
            count, images, t0 = 0, 0, _clock()
            for batch in data.batches(epoch):
                if channels_last:
                    batch["views"] = [v.contiguous(memory_format=torch.channels_last) if v.ndim == 4 else v
                                      for v in batch["views"]]
                lr = lr_at(step, total_steps, cfg.lr, warmup_steps, cfg.final_lr, cfg.schedule)
                set_lr(optimizer, lr)
                ctx = step_context(epoch, lr)
                with autocast(device, amp_dtype):
                    out = task.loss_step(net, batch, ctx)
                loss = out["loss"]
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(task.trainable.parameters(), cfg.grad_clip)
                # A non-finite loss must not reach the weights (or the next checkpoint).
                bad = not bool(torch.isfinite(loss.detach()))
                if broadcast_flag(bad, dist, device):
                    raise CcliError(_nan_message(epoch, step, files.checkpoint, start_epoch, history))
                optimizer.step()
                if task.after_step is not None:
                    task.after_step(ctx)
                for key, value in out.items():
                    v = value.detach() if hasattr(value, "detach") else value
                    pending[key] = pending.get(key, 0.0) + v
                count += 1
                images += len(batch["index"]) * dist.world_size
                step += 1
                progress.advance(float(loss.detach()) if device.type == "cpu" or count % 20 == 0 else None)
                if announce and dist.is_main and epoch == start_epoch + 1:
                    if count == 1:
                        timed_from, timed_images = _clock(), images
                    elif count == min(1 + ESTIMATE_STEPS, steps_per_epoch):
                        announce = False
                        per_step = (_clock() - timed_from) / (count - 1)
                        epochs_left = cfg.epochs - start_epoch + later_epochs
                        seconds = run_estimate(per_step, steps_per_epoch, epochs_left)
                        if seconds > ESTIMATE_WARN_S and per_step > 0:
                            rate = (images - timed_images) / (per_step * (count - 1))
                            log.info(estimate_message(seconds, rate, epochs_left, steps_per_epoch))
            sums = {k: float(v) for k, v in pending.items()}
            elapsed = _clock() - t0
            record: dict[str, Any] = ({"stage": stage} if stage else {}) | {"epoch": epoch, "step": step}
            for key, total in sums.items():
                record[key] = all_reduce_mean(total / max(1, count), dist, device)
            record["lr"] = lr_at(step - 1, total_steps, cfg.lr, warmup_steps, cfg.final_lr, cfg.schedule)
            record["images_per_s"] = images / elapsed if elapsed > 0 else None
            record["epoch_time_s"] = elapsed
            if (monitor is not None and task.embed is not None and cfg.knn_every > 0 and dist.is_main
                    and (epoch % cfg.knn_every == 0 or epoch == cfg.epochs)):
                task.model.eval()
                record["knn_acc"] = monitor(task.embed, device, lambda: autocast(device, amp_dtype))
                task.model.train()
            if (task.epoch_metrics is not None and cfg.eval_every > 0 and dist.is_main
                    and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs)):
                task.model.eval()
                with torch.no_grad():
                    record.update({k: float(v) for k, v in task.epoch_metrics(device).items()})
                task.model.train()
            if not all(math.isfinite(v) for v in record.values() if isinstance(v, float)):
                raise CcliError(_nan_message(epoch, step, files.checkpoint, start_epoch, history))
            history.append(record)
            if dist.is_main:
                with open(files.metrics, "a") as fh:
                    fh.write(json.dumps(record) + "\n")
                save(epoch, epoch == cfg.epochs)
                knn = f"  knn {record['knn_acc']:.3f}" if "knn_acc" in record else ""
                scores = "".join(f"  {k} {record[k]:.3f}" for k in ("acc", "nmi", "ari") if k in record)
                where = f"{stage} " if stage else ""
                left = remaining_time([r.get("epoch_time_s") for r in history if r.get("stage", "") == stage],
                                      cfg.epochs - epoch + later_epochs)
                eta = f"  eta {format_duration(left)}" if left > 0 else ""
                log.info(f"{where}epoch {epoch}/{cfg.epochs}  loss {record['loss']:.4f}  lr {record['lr']:.3g}"
                         f"  {record['images_per_s']:.0f} img/s{knn}{scores}{eta}")
    if dist.is_main and start_epoch >= cfg.epochs:
        save(cfg.epochs, True)
    return FitResult(files.checkpoint, history, start_epoch)


def _nan_message(epoch: int, step: int, checkpoint: Path, start_epoch: int, history: list) -> str:
    last = history[-1]["epoch"] if history else start_epoch
    kept = (f"the last good checkpoint (epoch {last}) is kept at {checkpoint}" if last
            else "no checkpoint was written")
    return (f"the training loss became NaN or infinite at epoch {epoch} (step {step + 1}); {kept}; "
            "lower the learning rate (--set lr=…) or add warm-up (--set warmup_epochs=…).")


def _replace_stage_lines(path: Path, stage: str, history: list) -> None:
    """metrics.jsonl keeps other stages' lines; this stage's become exactly the epochs its checkpoint saw.

    Lines of earlier stages (and anything else the run wrote) are kept in order, so a
    multi-stage run never loses the record of a finished stage when a later one starts or resumes.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    kept = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill: the checkpoint's history has the epoch
            if not (isinstance(record, dict) and "epoch" in record and record.get("stage", "") == stage):
                kept.append(line)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as fh:
        for line in kept:
            fh.write(line + "\n")
        for record in history:
            fh.write(json.dumps(record) + "\n")
    tmp.replace(path)
