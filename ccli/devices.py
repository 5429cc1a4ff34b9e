"""Checking a `--device` value before anything is written (the CLI cannot import the engine).

`auto` and `cpu` need no torch; a CUDA device is checked for existence here, so a command
asked for a GPU that is not there is refused before it writes a run folder or reads the
cache (a cached result would otherwise be returned for an impossible request).
"""

from __future__ import annotations

from ccli.errors import BadInput


def check_device(spec: str | None) -> None:
    """BadInput unless `spec` is auto, cpu, or a CUDA device that exists."""
    text = (spec or "auto").strip().lower()
    if text in ("auto", "cpu"):
        return
    if text != "cuda" and not text.startswith("cuda:"):
        raise BadInput(f"--device {spec} is not a device (use auto, cpu, cuda or cuda:N).")
    from ccli.engine.device import resolve_device

    resolve_device(text)
