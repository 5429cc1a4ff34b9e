"""Device resolution for `--device auto|cpu|cuda|cuda:N`, and the precision that goes with it."""

from __future__ import annotations

import contextlib

from ccli.errors import BadInput


def resolve_device(spec: str = "auto"):
    """The torch.device for a --device value; asking for a GPU that is not there is bad input."""
    import torch

    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise BadInput(f"--device {spec} was asked for, but no CUDA GPU is available (use --device cpu).")
        index = 0
        if ":" in spec:
            try:
                index = int(spec.split(":", 1)[1])
            except ValueError as exc:
                raise BadInput(f"--device {spec} is not a device (use auto, cpu, cuda or cuda:N).") from exc
        count = torch.cuda.device_count()
        if not 0 <= index < count:
            raise BadInput(f"--device {spec} does not exist: this machine has {count} CUDA device(s).")
        return torch.device("cuda", index)
    raise BadInput(f"--device {spec} is not a device (use auto, cpu, cuda or cuda:N).")


def autocast_dtype(device, precision: str = "auto"):
    """bf16 on a GPU that supports it (precision 'auto' or 'bf16'), else None (full fp32)."""
    import torch

    if precision == "fp32" or device.type != "cuda":
        return None
    if precision in ("auto", "bf16") and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def autocast(device, dtype):
    """An autocast context for `dtype`, or a no-op when dtype is None."""
    import torch

    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
