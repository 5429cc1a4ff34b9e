"""Artifact kinds and what each one must hold (DESIGN.md, "Artifacts").

A reader checks `kind` and `schema_version` before trusting anything else in the file, so a
newer file read by an older ccli fails with a clear sentence instead of a KeyError later.
"""

from __future__ import annotations

SCHEMA_VERSION = 1

# kind -> (required datasets, optional datasets or groups)
KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "features": (("features", "labels", "index"), ("views", "ids")),
    "neighbors": (("indices", "scores"), ("labels", "steps")),
    "graph": (("indptr", "indices", "data"), ("weights", "labels", "laplacian")),
    "predictions": (("labels", "index"), ("probs", "targets", "ids")),
}

# Datasets whose first axis is the sample axis; `verify` checks they agree on N.
ROW_ALIGNED: dict[str, tuple[str, ...]] = {
    "features": ("features", "labels", "index", "ids"),
    "neighbors": ("indices", "scores"),
    "graph": (),
    "predictions": ("labels", "index", "probs", "targets", "ids"),
}

ROOT_ATTRS = ("kind", "schema_version", "ccli_version", "key", "inputs", "config", "created")
