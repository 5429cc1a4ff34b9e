"""The preset catalogue: every `presets/<method>/<name>.yaml`, its sources and its paper numbers.

A preset value line carries a comment naming its source (paper table/section, reference code)
or saying PROPOSED with the reason; `value_lines` reads those comments back, and `unsourced`
lists the lines without one. A preset may carry `paper_results:` (a mapping or a list of
mappings with table, dataset, acc, nmi, ari): the paper's reported numbers, which the report
shows beside ours and which never reach a config (ccli.config.PRESET_METADATA_KEYS).

Methods are discovered, never listed here: the clustering methods of ccli.methods.registry and
the pretraining recipes (ccli.config.PRETRAIN_METHODS), each with its folder of presets.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ccli.config import PRESET_METADATA_KEYS, PRETRAIN_METHODS, available_presets, presets_root
from ccli.errors import BadInput
from ccli.report.paper import paper_results_of

@dataclass
class ValueLine:
    number: int  # 1-based line number in the file
    key: str  # dotted for nested keys
    value: str
    comment: str  # the source comment ('' when missing)


@dataclass
class PresetInfo:
    method: str
    name: str
    path: Path
    dataset: str | None  # the dataset kind the preset is for, when its name says so
    values: dict[str, Any]  # what load_preset returns (the configuration)
    lines: list[ValueLine] = field(default_factory=list)
    paper_results: list[dict[str, Any]] = field(default_factory=list)

    @property
    def full_name(self) -> str:
        return f"{self.method}/{self.name}"

    @property
    def proposed(self) -> int:
        return sum("PROPOSED" in line.comment for line in self.lines)

    @property
    def sourced(self) -> int:
        return sum(bool(line.comment) and "PROPOSED" not in line.comment for line in self.lines)

    def as_json(self) -> dict[str, Any]:
        return {"method": self.method, "name": self.name, "path": str(self.path), "dataset": self.dataset,
                "values": self.values, "sourced": self.sourced, "proposed": self.proposed,
                "sources": {line.key: line.comment for line in self.lines}, "paper_results": self.paper_results}


def preset_methods() -> list[str]:
    """Every method that can have presets: the registry's clustering methods, then the pretraining recipes."""
    from ccli.methods.registry import method_names

    names = list(method_names())
    return names + [m for m in PRETRAIN_METHODS if m not in names]


def dataset_of(name: str) -> str | None:
    """The dataset kind a preset name refers to: the name itself, or its last dash-separated part(s)."""
    from ccli.data.sources import DATASET_KINDS

    if name in DATASET_KINDS:
        return name
    parts = name.split("-")
    for start in range(1, len(parts)):
        tail = "-".join(parts[start:])
        if tail in DATASET_KINDS:
            return tail
    return None


_KEY_LINE = re.compile(r"^(?P<indent>\s*)(?P<dash>-\s+)?(?P<key>[A-Za-z_][\w.-]*)\s*:(?P<rest>.*)$")


def _split_comment(text: str) -> tuple[str, str]:
    """(value, comment) of a YAML line's remainder: the first ' #' outside quotes starts the comment."""
    quote = None
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1].isspace()):
            return text[:i].strip(), text[i + 1:].strip()
    return text.strip(), ""


def value_lines(path: Path) -> list[ValueLine]:
    """The configuration value lines of a preset file with their comments (paper_results excluded:
    each of its entries names its table)."""
    out: list[ValueLine] = []
    parents: list[tuple[int, str]] = []  # (indent, key) of open mapping headers
    in_metadata_indent: int | None = None
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#") or stripped in ("---", "..."):
            continue
        indent = len(raw) - len(raw.lstrip())
        if in_metadata_indent is not None:
            if indent > in_metadata_indent or stripped.startswith("-"):
                continue
            in_metadata_indent = None
        match = _KEY_LINE.match(raw)
        if match is None:
            value, comment = _split_comment(stripped)
            key = ".".join(k for _, k in parents) or "?"
            out.append(ValueLine(number, key, value, comment))
            continue
        while parents and parents[-1][0] >= indent:
            parents.pop()
        key = match["key"]
        value, comment = _split_comment(match["rest"])
        if indent == 0 and key in PRESET_METADATA_KEYS:
            in_metadata_indent = indent
            continue
        dotted = ".".join([k for _, k in parents] + [key])
        if value == "":  # a mapping header: its children carry the values and the comments
            parents.append((indent, key))
            continue
        out.append(ValueLine(number, dotted, value, comment))
    return out


def unsourced(info: PresetInfo) -> list[ValueLine]:
    return [line for line in info.lines if not line.comment]


def preset_info(method: str, name: str) -> PresetInfo:
    from ccli.config import load_preset, preset_path

    group_name = f"{method}-{name}" if method in PRETRAIN_METHODS else name
    group = "pretrain" if method in PRETRAIN_METHODS else method
    path = preset_path(group, group_name)
    return PresetInfo(method, name, path, dataset_of(name), load_preset(group, group_name), value_lines(path),
                      paper_results_of(group, group_name, path))


def all_presets(method: str | None = None) -> list[PresetInfo]:
    methods = preset_methods()
    if method is not None and method not in methods:
        raise BadInput(f"{method} is not a method with presets (valid: {', '.join(methods)}).")
    chosen = [method] if method else methods
    return [preset_info(m, name) for m in chosen for name in available_presets(m)]


def find_presets(name: str) -> list[PresetInfo]:
    """`METHOD/NAME` (one preset) or a bare NAME (that preset of every method that has it)."""
    methods = preset_methods()
    everything = [f"{m}/{n}" for m in methods for n in available_presets(m)]
    if "/" in name:
        method, _, stem = name.partition("/")
        if f"{method}/{stem}" in everything:
            return [preset_info(method, stem)]
    else:
        matches = [full for full in everything if full.split("/", 1)[1] == name]
        if matches:
            return [preset_info(*full.split("/", 1)) for full in matches]
    candidates = everything + sorted({full.split("/", 1)[1] for full in everything})
    close = difflib.get_close_matches(name, candidates, n=6, cutoff=0.5)
    hint = f"close names: {', '.join(close)}" if close else f"presets live in {presets_root()}; see ccli presets ls"
    raise BadInput(f"preset {name} does not exist ({hint}).")


def close_preset_names(method: str, name: str) -> list[str]:
    return difflib.get_close_matches(name, available_presets(method), n=6, cutoff=0.5)
