"""The values shell completion offers for options: methods, presets per method, kinds, backbones…

Read by ccli.cli.completion_scripts when it renders the static scripts (the CLI layer may not
import models itself).
"""

from __future__ import annotations

def _presets_by_method(methods) -> dict[str, list[str]]:
    from ccli.config import available_presets

    return {m: ["auto", *available_presets(m)] for m in methods}


def value_choices() -> tuple[dict[tuple[str, str], list[str]], dict[str, dict[str, list[str]]]]:
    """Values each option completes to, keyed by (command path, option), and the presets of each
    method (for --preset, which depends on the --method on the line)."""
    from ccli.data.sources import DATASET_KINDS
    from ccli.methods.pretrain.config import METHODS as PRETRAIN_METHODS
    from ccli.methods import registry
    from ccli.models import available_backbones
    from ccli.store.runs import RUN_KINDS
    from ccli.store.schema import KINDS

    # Only ccli's own methods: a test registering a toy method must not change the scripts.
    methods = [m for m in registry.method_names() if registry.get(m).module.startswith("ccli.")]
    data = [k if k == "digits" else f"{k}:" for k in DATASET_KINDS]
    devices = ["auto", "cpu", "cuda", "cuda:0"]
    fixed = {
        ("ccli train", "--method"): methods,
        ("ccli pretrain", "--method"): list(PRETRAIN_METHODS),
        ("ccli pretrain", "--backbone"): available_backbones(),
        ("ccli train", "--data"): data,
        ("ccli pretrain", "--data"): data,
        ("ccli embed", "--data"): data,
        ("ccli train", "--split"): ["train", "test", "all"],
        ("ccli pretrain", "--split"): ["train", "test", "all"],
        ("ccli embed", "--layer"): ["projector", "backbone"],
        ("ccli embed", "--dtype"): ["float32", "float16"],
        ("ccli import", "--dtype"): ["float32", "float16"],
        ("ccli eval", "--match"): ["hungarian", "majority"],
        ("ccli export", "--format"): ["csv", "jsonl"],
        ("ccli cache ls", "--kind"): [*KINDS, *RUN_KINDS],
        ("ccli cache gc", "--kind"): list(KINDS),
        ("ccli neighbors", "--metric"): ["cosine", "l2"],
        ("ccli neighbors", "--backend"): ["auto", "faiss", "torch"],
    }
    for command in ("ccli train", "ccli pretrain", "ccli embed", "ccli neighbors", "ccli graph"):
        fixed[(command, "--device")] = devices
    presets = {"ccli train": _presets_by_method(methods),
               "ccli pretrain": _presets_by_method(PRETRAIN_METHODS)}
    return fixed, presets
