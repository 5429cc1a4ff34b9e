"""Reading feature matrices and augmented views out of a features artifact.

Every reader checks the values are finite on the way in (block by block, so a 1M×2048
file is never copied twice): a NaN that reaches faiss or a matmul silently produces
garbage neighbours, so it is refused here with the number of bad rows.
"""

from __future__ import annotations

import re

import numpy as np

from ccli.errors import BadInput
from ccli.store import Artifact

# Rows read per block while checking finiteness (bounded temporary memory).
_READ_BLOCK_BYTES = 64 * 2**20

# `ccli embed --views` is the option that stores augmented views in a features artifact.
EMBED_VIEWS_HINT = "ccli embed --views"


def read_matrix(art: Artifact, name: str, dtype=np.float32) -> np.ndarray:
    """Dataset `name` of `art` as a 2-D array of `dtype`, refusing NaN/inf (BadInput, with the row count)."""
    shape = art.shape(name)
    if len(shape) != 2:
        raise BadInput(f"{art.path}: dataset '{name}' has shape {shape}, expected a 2-D [N, D] matrix.")
    n, d = shape
    out = np.empty((n, d), dtype=dtype)
    bad_rows = 0
    step = max(1, _READ_BLOCK_BYTES // max(1, d * 4))
    for start in range(0, n, step):
        block = art.read(name, slice(start, start + step))
        bad_rows += int((~np.isfinite(block)).any(axis=1).sum())
        out[start : start + len(block)] = block
    if bad_rows:
        raise BadInput(f"{art.path}: dataset '{name}' has NaN or inf values in {bad_rows} of {n} rows.")
    return out


def read_labels(art: Artifact) -> np.ndarray | None:
    """Ground-truth labels (int64, −1 unknown), or None when the artifact knows none."""
    if "labels" not in art:
        return None
    labels = np.asarray(art.read("labels")).astype(np.int64).reshape(-1)
    return labels if (labels >= 0).any() else None


def view_names(art: Artifact) -> list[str]:
    """Names of the datasets under `views/` (empty when the artifact stores no views)."""
    import h5py

    group = art.h5.get("views")
    if not isinstance(group, h5py.Group):
        return []
    return sorted(name for name, obj in group.items() if isinstance(obj, h5py.Dataset))


def _draw_number(name: str) -> int:
    match = re.search(r"(\d+)$", name)
    return int(match.group(1)) if match else -1


def find_views(art: Artifact, role: str) -> list[str]:
    """Dataset paths of every draw of a view role ('clean', 'weak', 'strong'), draw order.

    Tolerant of how a producer spelled them: `views/weak`, `views/weak_0`, `views/weak1`,
    `views/weak-2` all count as draws of 'weak'; an undecorated name sorts first.
    """
    pattern = re.compile(rf"^{re.escape(role)}(?:[_\-]?\d+)?$", re.IGNORECASE)
    names = [n for n in view_names(art) if pattern.match(n)]
    return [f"views/{n}" for n in sorted(names, key=_draw_number)]


def clean_view(art: Artifact) -> str:
    """The clean (evaluation-transform) features: `views/clean` when stored, else `features`."""
    found = find_views(art, "clean")
    return found[0] if found else "features"


def require_views(art: Artifact, roles: tuple[str, ...], draws: dict[str, int] | None = None) -> dict[str, list[str]]:
    """The view datasets for each role, or BadInput naming what is missing and how to make it."""
    draws = draws or {}
    found = {role: find_views(art, role) for role in roles}
    missing = [role for role in roles if not found[role]]
    if missing:
        have = ", ".join(view_names(art)) or "none"
        wanted = " and ".join(f"'views/{role}'" for role in missing)
        raise BadInput(
            f"{art.path} has no {wanted} view{'s' if len(missing) > 1 else ''} (stored views: {have}); "
            f"make them with `{EMBED_VIEWS_HINT} {','.join(roles)}`."
        )
    for role, wanted in draws.items():
        if wanted > len(found[role]):
            raise BadInput(
                f"{art.path} stores {len(found[role])} draw(s) of the '{role}' view but {wanted} were asked for; "
                f"store more with `{EMBED_VIEWS_HINT}`."
            )
    return {role: found[role][: draws.get(role, 1)] for role in roles}
