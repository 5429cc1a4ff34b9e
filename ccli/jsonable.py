"""One `default=` hook for json.dumps shared by every command that prints or writes JSON."""

from __future__ import annotations

from pathlib import Path


def json_default(value):
    """numpy scalars/arrays and paths as plain JSON values."""
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
