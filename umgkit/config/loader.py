"""YAML config files with ``_base_`` inheritance and dotted command-line overrides.

A file may name one or more ``_base_`` files (paths relative to itself); bases are merged first, in
order, and the file's own keys win, recursively for mappings. YAML is parsed with a ``yaml.SafeLoader``
that refuses duplicate keys: configs are data and nothing in them is executed. Each leaf remembers which
file set it, so a schema error can point at the right file.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from .._io import atomic_write_text
from .schema import RunConfig
from .validate import ConfigError, check_head_task, from_dict, to_dict

__all__ = ["load_config", "load_yaml_tree", "apply_overrides", "save_config", "config_from_dict"]

BASE_KEY = "_base_"
# a registry-named method and the options that belong to it: switching the method drops the old options
# (section, method key, its options key): switching the method forgets the replaced method's options.
# A backbone's weights file belongs to that backbone, so switching model.backbone forgets model.pretrained.
METHOD_OPTIONS = (("model", "adapter", "adapter_options"), ("model", "head", "head_options"),
                  ("model", "backbone", "pretrained"))


def load_config(path: str | os.PathLike, overrides: Iterable[str] = (), schema: type = RunConfig) -> Any:
    """Read ``path`` (+ its bases), apply ``key.path=value`` overrides, validate into ``schema`` (a
    `RunConfig` also against the registries: its head must serve its task).

    Example:
        >>> cfg = load_config("configs/demo/classification.yaml", ["train.lr=1e-3"])  # doctest: +SKIP
    """
    data, origins = load_yaml_tree(Path(path))
    apply_overrides(data, origins, overrides)
    return _validated(schema, data, origins)


def config_from_dict(data: Mapping[str, Any], overrides: Iterable[str] = (), schema: type = RunConfig) -> Any:
    """Like `load_config` for data already in memory (tests, the demo)."""
    data = _deep_copy(dict(data))
    origins: dict[str, str] = {}
    apply_overrides(data, origins, overrides)
    return _validated(schema, data, origins)


def _validated(schema: type, data: dict, origins: dict[str, str]) -> Any:
    cfg = from_dict(schema, data, origins)
    if isinstance(cfg, RunConfig):
        check_head_task(cfg)
    return cfg


def load_yaml_tree(path: Path, _chain: tuple[Path, ...] = ()) -> tuple[dict, dict[str, str]]:
    """The merged data of ``path`` and its bases, and the file each dotted key came from."""
    path = path.resolve()
    if path in _chain:
        cycle = " -> ".join(str(p) for p in (*_chain, path))
        raise ConfigError(f"{path}: `_base_` files form a cycle: {cycle}. Remove one of the links.")
    if not path.is_file():
        where = f" (named as a `_base_` of {_chain[-1]})" if _chain else ""
        raise ConfigError(f"config file {path} does not exist{where}. Check the path; `_base_` paths are "
                          f"relative to the file that names them.")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path} is not a text file ({err.reason} at byte {err.start}); give a YAML config "
                          f"file, e.g. configs/demo/classification.yaml.") from err
    except ConfigError as err:  # a duplicate key: the loader knows the lines, this function the file
        raise ConfigError(f"{path}: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if raw is None and not _chain:
        raise ConfigError(f"config file {path} is empty; write the run's keys in it (task, model, data, "
                          f"...), e.g. starting from configs/demo/classification.yaml.")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config file must hold a mapping of keys, got {type(raw).__name__}.")
    bases = raw.pop(BASE_KEY, [])
    bases = [bases] if isinstance(bases, str) else bases
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: `_base_` must be a path or a list of paths, got {bases!r}.")
    merged: dict = {}
    origins: dict[str, str] = {}
    for base in bases:
        base_data, base_origins = load_yaml_tree(path.parent / base, (*_chain, path))
        _merge(merged, base_data)
        origins.update(base_origins)
    _drop_switched_options(merged, origins, raw)
    _merge(merged, raw)
    origins.update({key: str(path) for key in _leaf_paths(raw)})
    return merged, origins


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (plain YAML keeps the last one
    silently, so ``lr: 1`` above ``lr: 2`` would train with a value the user may not have meant)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`; its keys may be overridden
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, Hashable):  # yaml's own constructor below reports it
                continue
            if key in seen:
                raise ConfigError(f"key '{key}' is given twice (lines {seen[key]} "
                                  f"and {line}) in one mapping; keep one of them.")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def apply_overrides(data: dict, origins: dict[str, str], overrides: Iterable[str]) -> None:
    """Apply ``a.b.c=value`` strings in place; values are parsed as YAML (``1e-3``, ``[1, 2]``, ``null``).

    Switching a method (``model.adapter=...``, ``model.head=...``, ``model.backbone=...``) drops the
    options of the one it replaces (``model.pretrained`` for a backbone); options given on the same command
    line apply to the new method.
    """
    overrides = list(overrides)
    switched: dict = {}
    methods = {f"{section}.{method}" for section, method, _ in METHOD_OPTIONS}
    for item in overrides:
        key, _, text = item.partition("=")
        if key.strip() in methods and "=" in item:
            switched.setdefault("model", {})[key.strip().split(".")[1]] = _parse_value(item, text)
    _drop_switched_options(data, origins, switched)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"command-line override '{item}' must look like key.path=value "
                              f"(e.g. train.lr=1e-3).")
        key, text = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"command-line override '{item}' has an empty key part.")
        value = _parse_value(item, text)
        node = data
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                prefix = ".".join(parts[: depth + 1])
                raise ConfigError(f"command-line override '{item}': '{prefix}' holds {child!r}, not a "
                                  f"mapping, so it has no key '{parts[depth + 1]}'.")
            node = child
        node[parts[-1]] = value
        origins[key] = "command line"


def save_config(cfg: Any, path: str | os.PathLike) -> Path:
    """Write the resolved config as YAML, atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))


def _parse_value(item: str, text: str) -> Any:
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"command-line override '{item}': value is not valid YAML: {err}") from None


def _drop_switched_options(data: dict, origins: dict[str, str], new: Mapping) -> None:
    """Where ``new`` names another method than ``data`` (adapter, head), forget ``data``'s options for it:
    a base config's LoRA ``rank`` must not reach the AdaptFormer a child config or override switches to."""
    for section, method, options in METHOD_OPTIONS:
        old_part, new_part = data.get(section), new.get(section)
        if not isinstance(old_part, dict) or not isinstance(new_part, Mapping) or method not in new_part:
            continue
        if new_part[method] != old_part.get(method) and options in old_part:
            del old_part[options]
            for key in [k for k in origins if k == f"{section}.{options}" or
                        k.startswith(f"{section}.{options}.")]:
                del origins[key]


def _merge(into: dict, new: Mapping) -> None:
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = _deep_copy(value)


def _leaf_paths(data: Mapping, prefix: str = "") -> list[str]:
    paths = []
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        paths.append(path)
        if isinstance(value, Mapping):
            paths.extend(_leaf_paths(value, path))
    return paths


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value
