"""Typed configs, presets and `--set key=value` overrides.

Every command or method has a dataclass of defaults. A preset (`presets/<group>/<name>.yaml`,
or a path to a YAML file) overrides some fields, then each `--set key=value` overrides one
more. Unknown keys are bad input and the message lists the valid ones, so a typo never
silently trains with a default.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar

from ccli.errors import BadInput

T = TypeVar("T")

PRESETS_ENV = "CCLI_PRESETS"


def presets_root() -> Path:
    """$CCLI_PRESETS, else the `presets/` folder beside the package (editable installs)."""
    if os.environ.get(PRESETS_ENV):
        return Path(os.environ[PRESETS_ENV])
    return Path(__file__).resolve().parent.parent / "presets"


# Pretraining recipes live with their method (presets/simclr/, presets/moby/); the group
# 'pretrain' names one of them as '<method>-<name>' (e.g. simclr-digits), which is how the
# kmeans method's `pretrain_preset` refers to the recipe it runs.
PRETRAIN_GROUP = "pretrain"
PRETRAIN_METHODS = ("simclr", "moby")  # the pretraining methods (ccli.methods.pretrain.METHODS)


def available_presets(group: str) -> list[str]:
    if group == PRETRAIN_GROUP:
        return [f"{method}-{name}" for method in PRETRAIN_METHODS for name in available_presets(method)]
    folder = presets_root() / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def preset_path(group: str, name: str) -> Path:
    """Resolve `--preset NAME` for a command group: presets/<group>/<NAME>.yaml, or a YAML file."""
    candidate = Path(name).expanduser()
    if name.endswith((".yaml", ".yml")) or candidate.is_file():
        if not candidate.is_file():
            raise BadInput(f"--preset {name} does not exist.")
        return candidate
    folder, stem = group, name
    if group == PRETRAIN_GROUP and "-" in name:
        folder, stem = name.split("-", 1)
    path = presets_root() / folder / f"{stem}.yaml"
    if not path.is_file():
        valid = ", ".join(available_presets(group)) or "none"
        raise BadInput(f"--preset {name} is not a preset for {group} (available: {valid}).")
    return path


# Keys a preset may carry that describe it rather than configure a run: the paper's reported
# numbers (`paper_results: {table: "…", dataset: "…", acc: …, nmi: …, ari: …}`, a mapping or a
# list of them). They never reach a config and never enter a run key.
PRESET_METADATA_KEYS = ("paper_results",)


def load_preset(group: str, name: str) -> dict[str, Any]:
    """A preset's configuration values (metadata keys removed: see preset_metadata)."""
    data = _read_preset(group, name)
    return {key: value for key, value in data.items() if key not in PRESET_METADATA_KEYS}


def preset_metadata(group: str, name: str) -> dict[str, Any]:
    """A preset's descriptive keys (PRESET_METADATA_KEYS) that load_preset leaves out."""
    data = _read_preset(group, name)
    return {key: data[key] for key in PRESET_METADATA_KEYS if key in data}


def _read_preset(group: str, name: str) -> dict[str, Any]:
    import yaml

    path = preset_path(group, name)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise BadInput(f"--preset {path} is not valid YAML ({str(exc).splitlines()[0]}).") from exc
    if not isinstance(data, dict):
        raise BadInput(f"--preset {path} must be a mapping of key: value.")
    return data


def parse_sets(items: Sequence[str]) -> dict[str, Any]:
    """`--set a=1 --set b.c=[1,2]` -> {'a': 1, 'b.c': [1, 2]} with YAML typing of values."""
    import yaml

    out: dict[str, Any] = {}
    for item in items or ():
        if "=" not in item:
            raise BadInput(f"--set {item} must look like key=value.")
        key, raw = item.split("=", 1)
        key = key.strip()
        try:
            out[key] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            out[key] = raw
    return out


def _coerce(value: Any, annotation: Any, key: str, source: str) -> Any:
    """Convert a YAML value to a field's declared type, or say which key is wrong."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin is typing.Union or (origin is not None and str(origin) == "types.UnionType"):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, source)
            except BadInput as exc:
                errors.append(exc)
        raise errors[0]
    if origin is typing.Literal:
        if value not in args:
            raise BadInput(f"{source} {key}={value!r} is not one of {', '.join(map(str, args))}.")
        return value
    if origin in (list, tuple, Sequence):
        if not isinstance(value, (list, tuple)):
            value = [value]
        inner = args[0] if args else Any
        items = [_coerce(v, inner, key, source) for v in value]
        return tuple(items) if origin is tuple else items
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise BadInput(f"{source} {key}={value!r} must be true or false.")
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise BadInput(f"{source} {key}={value!r} must be an integer.")
        return int(value)
    if annotation is float:
        if isinstance(value, str):
            # YAML 1.1 reads "2e-3" (no dot) as a string; a float field accepts it anyway.
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadInput(f"{source} {key}={value!r} must be a number.")
        return float(value)
    if annotation is str:
        return str(value)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, Mapping):
            raise BadInput(f"{source} {key} must be a mapping.")
        return build_config(annotation, [(source, dict(value))], prefix=f"{key}.")
    return value


def section(factory: Callable[[], Any]):
    """A nested config section (e.g. `engine`) whose keys may also be given flat (`lr` for `engine.lr`).

    Presets and `--set` keep their short spelling (`--set lr=2e-3`), while the fields are declared
    once, in the section's dataclass; a method changes only the defaults it needs.
    """
    return dataclasses.field(default_factory=factory, metadata={"section": True})


def _sections(cls) -> dict[str, type]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.metadata.get("section")}


def valid_keys(cls, prefix: str = "") -> list[str]:
    """Every settable key of a config class, nested sections spelled with dots."""
    hints = typing.get_type_hints(cls)
    keys = []
    for f in dataclasses.fields(cls):
        if f.metadata.get("section"):
            keys.extend(valid_keys(hints[f.name], prefix=f"{prefix}{f.name}."))
        else:
            keys.append(prefix + f.name)
    return sorted(keys)


def build_config(cls: type[T], layers: Sequence[tuple[str, Mapping[str, Any]]], prefix: str = "",
                 base: Any = None) -> T:
    """Instantiate dataclass `cls` from its defaults (or `base`) plus override layers, in order.

    Each layer is (source description for messages, mapping). Dotted keys ('a.b') address
    nested dataclass fields; a key that is not a field of `cls` but of one of its sections
    (`section(...)` fields) goes to that section.
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    sections = _sections(cls)
    section_of = {name: head for head, sub in sections.items() for name in (f.name for f in dataclasses.fields(sub))}
    values: dict[str, Any] = {}
    nested: dict[str, list[tuple[str, dict]]] = {}
    for source, mapping in layers:
        for raw_key, value in mapping.items():
            key = str(raw_key).replace("-", "_")
            head, _, rest = key.partition(".")
            if head not in fields and head in section_of:
                head, rest = section_of[head], key
            if head not in fields:
                valid = ", ".join(valid_keys(cls, prefix))
                raise BadInput(f"{source} has unknown key '{prefix}{raw_key}' (valid keys: {valid}).")
            if rest or (dataclasses.is_dataclass(hints[head]) and isinstance(value, Mapping)):
                sub = {rest: value} if rest else dict(value)
                nested.setdefault(head, []).append((source, sub))
            else:
                values[head] = _coerce(value, hints[head], prefix + head, source)
    start = base
    for head, sub_layers in nested.items():
        default = getattr(start, head) if start is not None else _field_default(fields[head])
        values[head] = build_config(hints[head], sub_layers, prefix=f"{prefix}{head}.", base=default)
    result = dataclasses.replace(start, **values) if start is not None else cls(**values)
    _check_temperatures(result, prefix)
    return result


def _check_temperatures(config: Any, prefix: str = "") -> None:
    """A temperature (a field named tau, tau_*, or *temperature*) divides similarities: it must be > 0."""
    for f in dataclasses.fields(config):
        name = f.name
        if name == "tau" or name.startswith("tau_") or "temperature" in name:
            value = getattr(config, name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and not value > 0:
                raise BadInput(f"{prefix}{name}={value} must be positive (it is a temperature).")


def _field_default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    if f.default is not dataclasses.MISSING:
        return f.default
    return None


def resolve_config(cls: type[T], group: str, preset: str | None = None, sets: Sequence[str] = (),
                   explicit: Mapping[str, Any] | None = None, explicit_source: str = "option") -> T:
    """The one resolver every command uses: defaults <- preset <- --set <- explicit values.

    `group` names the preset folder (presets/<group>/); `explicit` holds values typed as their
    own options (None entries are "not given" and skipped).
    """
    layers: list[tuple[str, Mapping[str, Any]]] = []
    if preset:
        layers.append((f"--preset {preset}", load_preset(group, preset)))
    overrides = parse_sets(sets)
    if overrides:
        layers.append(("--set", overrides))
    given = {k: v for k, v in (explicit or {}).items() if v is not None}
    if given:
        layers.append((explicit_source, given))
    return build_config(cls, layers)


def flat_config(config: Any, prefix: str = "") -> dict[str, Any]:
    """A config (dataclass or mapping) as one level of dotted keys, for comparisons and messages."""
    source = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    out: dict[str, Any] = {}
    for key, value in source.items():
        if isinstance(value, Mapping):
            out.update(flat_config(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def config_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as a plain dict (for YAML, JSON and content keys)."""
    return dataclasses.asdict(config)
