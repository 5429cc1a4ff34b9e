"""What `ccli data info` reports about a dataset: sizes, classes and identity."""

from __future__ import annotations

import numpy as np


def dataset_summary(ds) -> dict:
    """A JSON-ready summary of an ImageDataset (class sizes count the labelled images only)."""
    known = ds.labels >= 0
    counts = np.bincount(ds.labels[known]) if known.any() else np.zeros(0, dtype=np.int64)
    return {
        "spec": ds.spec,
        "split": ds.split,
        "n": len(ds),
        "image_shape": list(ds.images.shape[1:]),
        "channels": int(ds.images.shape[-1]),
        "colour": "grayscale" if ds.images.shape[-1] == 1 else "RGB",
        "num_classes": ds.num_classes,
        "labelled": int(known.sum()),
        "class_sizes": counts.tolist(),
        "class_names": ds.class_names,
        "fingerprint": ds.fingerprint,
    }
