"""The dependency rules of DESIGN.md, checked on the import statements of every module (AST).

Dependencies point one way: cli → methods → (engine, models, losses, data, store) → torch.
A failure names the module, the import and the rule it breaks.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "ccli"
HEAVY = {"torch", "torchvision", "scipy", "sklearn", "faiss", "h5py", "numpy", "matplotlib"}


def _modules() -> dict[str, Path]:
    return {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts): p for p in PACKAGE.rglob("*.py")}


def imports_of(path: Path) -> list[str]:
    """Every module an import statement names (absolute; `from ccli import log` counts as ccli.log)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
            if node.module == "ccli":
                names.extend(f"ccli.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            names.append(f"<relative import in {path.name}>")
    return names


def layer(module: str) -> str:
    """'ccli.methods.cc' → 'methods'; top-level modules ('ccli.log') are their own layer."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


# (layer of the importing module, predicate on the imported name, rule) — the rules of DESIGN.md
RULES = [
    ("losses", lambda name: name.startswith("ccli.") and layer(name) != "losses",
     "a loss is a pure function of tensors: losses import nothing of ccli"),
    ("metrics", lambda name: name.split(".")[0] in {"torch", "torchvision"} or layer(name) in {"models", "engine"},
     "metrics never import torch or models (ccli eval starts without torch)"),
    ("store", lambda name: layer(name) in {"methods", "engine", "models", "losses", "cli", "neighbors", "graph"},
     "the store knows no method: it reads and writes artifacts of any kind"),
    ("engine", lambda name: layer(name) in {"methods", "cli", "neighbors", "graph", "report"},
     "the engine serves every method alike and imports none"),
    ("cli", lambda name: name.split(".")[0] in HEAVY or layer(name) in {"losses", "models", "engine"},
     "cli holds no maths and no file formats: it parses options and calls the library"),
]
LOWER = {"losses", "models", "data", "metrics", "store", "engine", "neighbors", "graph", "threads", "config",
         "errors", "log", "jsonable", "report"}


def violations() -> list[str]:
    found = []
    for module, path in sorted(_modules().items()):
        own = layer(module)
        for name in imports_of(path):
            if name.startswith("<relative"):
                found.append(f"{module}: {name} (ccli uses absolute imports)")
                continue
            for rule_layer, breaks, rule in RULES:
                if own == rule_layer and breaks(name):
                    found.append(f"{module} imports {name}: {rule}")
            if name.startswith("ccli.cli") and own not in {"cli", "__main__"}:
                found.append(f"{module} imports {name}: only the entry point imports the CLI")
            if name.startswith("ccli.methods") and own in LOWER:
                found.append(f"{module} imports {name}: methods sit above {own}; {own} must not know them")
    return found


def test_every_module_keeps_the_dependency_rules():
    assert violations() == []


@pytest.mark.parametrize("source, expected", [
    ("import torch\n", "cli holds no maths"),
    ("from ccli.methods import cc\n", "methods sit above"),
])
def test_the_checker_catches_a_broken_rule(tmp_path, monkeypatch, source, expected):
    # A module planted in the tree (cli for the first case, store for the second) must be reported.
    folder = "cli" if "torch" in source else "store"
    planted = PACKAGE / folder / "_planted_for_test.py"
    planted.write_text(source)
    try:
        assert any(expected in v and "_planted_for_test" in v for v in violations())
    finally:
        planted.unlink()


def test_no_method_module_imports_another_method():
    """Shared parts live in the base (trainer.py, two_heads.py), never in another method's module."""
    from ccli.methods import registry

    methods = {registry.get(name).module for name in registry.method_names()}
    modules = _modules()
    found = [f"{module} imports {name}" for module in sorted(methods) for name in imports_of(modules[module])
             if name in methods and name != module]
    assert found == []
