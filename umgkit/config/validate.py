"""Strict conversion of plain YAML data into the typed schema dataclasses.

Strict on purpose: a typo in a key would otherwise silently train with a default. Every error names
the file the value came from, the dotted key path, and what would be valid.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Union

from ..errors import ConfigError, close_matches

__all__ = ["ConfigError", "check_head_task", "from_dict", "to_dict"]


def from_dict(schema: type, data: Mapping[str, Any], origins: Mapping[str, str] | None = None,
              prefix: str = "") -> Any:
    """Build ``schema`` (a dataclass) from ``data``; ``origins`` maps dotted keys to their source file."""
    origins = origins or {}
    if not isinstance(data, Mapping):
        raise ConfigError(_where(origins, prefix) + f"'{prefix or '<root>'}' must be a mapping of keys, "
                          f"got {type(data).__name__} {data!r}.")
    fields = {f.name: f for f in dataclasses.fields(schema)}
    hints = typing.get_type_hints(schema)
    for key in data:
        if key not in fields:
            path = _join(prefix, str(key))
            close = close_matches(str(key), fields, n=1)
            hint = f" Did you mean '{_join(prefix, close[0])}'?" if close else ""
            raise ConfigError(_where(origins, path) + f"unknown key '{path}'.{hint} Valid keys under "
                              f"'{prefix or '<root>'}': {', '.join(sorted(fields))}.")
    kwargs = {}
    for name, f in fields.items():
        path = _join(prefix, name)
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], path, origins)
        elif f.metadata.get("required"):
            raise ConfigError(f"missing required value '{path}' (set it in the config file or as "
                              f"`{path}=...` on the command line).")
    obj = schema(**kwargs)
    for name, f in fields.items():
        if f.metadata.get("required") and getattr(obj, name) in ("", None):
            raise ConfigError(_where(origins, _join(prefix, name)) +
                              f"missing required value '{_join(prefix, name)}'.")
        _check_bounds(getattr(obj, name), f.metadata, _join(prefix, name), origins)
    return obj


def check_head_task(cfg: Any) -> None:
    """A run config's ``model.head`` must be a head that serves its ``task``.

    Checked when the config is loaded, so a semantic head on a classification run stops here, with the
    heads that fit, before anything is built or written (it would otherwise fail inside the first forward
    pass). It needs the registries filled (`import_builtins`, the torch imports), so it runs only when a
    head is named. A task that no head declares (``pretrain``, or a user task around another task's model)
    is left to the model builder, which checks the head against the task of the model it builds.
    """
    if not cfg.model.head:
        return
    from .._builtins import import_builtins
    from ..registry import HEADS, TASKS

    import_builtins()
    if cfg.task in TASKS and HEADS.serving(cfg.task):  # an unknown task is named by the task builder
        HEADS.check_task(cfg.model.head, cfg.task)


_BOUNDS = {"ge": (">=", lambda v, b: v >= b), "gt": (">", lambda v, b: v > b),
           "le": ("<=", lambda v, b: v <= b), "lt": ("<", lambda v, b: v < b)}


def _check_bounds(value: Any, metadata: Mapping[str, Any], path: str, origins: Mapping[str, str]) -> None:
    """Range checks declared with `umgkit.config.schema.ranged` (None = unset, never checked)."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    failed = [f"{sign} {metadata[k]}" for k, (sign, ok) in _BOUNDS.items() if k in metadata
              and not ok(value, metadata[k])]
    if failed:
        wanted = " and ".join(f"{sign} {metadata[k]}" for k, (sign, _) in _BOUNDS.items() if k in metadata)
        raise ConfigError(_where(origins, path) + f"key '{path}' has value {value!r}; it must be {wanted}. "
                          f"Set e.g. `{path}=...` to a value in that range.")


def to_dict(obj: Any) -> Any:
    """Plain data (dicts, lists, scalars) for a schema instance, safe for ``yaml.safe_dump``."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    return obj


def _convert(tp: Any, value: Any, path: str, origins: Mapping[str, str]) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value if value is not None else {}, origins, path)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        errors = []
        for a in inner:
            try:
                return _convert(a, value, path, origins)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0])
    if origin is Literal:
        if value not in args:
            raise _type_error(path, value, " or ".join(repr(a) for a in args), origins)
        return value
    if tp is Any:
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise _type_error(path, value, f"a list ({_name(tp)})", origins)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise _type_error(path, value, f"a list of {len(args)} values", origins)
            pairs = enumerate(zip(args, value, strict=True))
            return tuple(_convert(a, v, f"{path}[{i}]", origins) for i, (a, v) in pairs)
        item = args[0] if args else Any
        out = [_convert(item, v, f"{path}[{i}]", origins) for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, Mapping):
            raise _type_error(path, value, "a mapping", origins)
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _type_error(path, value, "true or false", origins)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _type_error(path, value, "an integer", origins)
    if tp is float:
        # YAML 1.1 reads "1e-3" (no dot) as a string; accept any text Python parses as a number.
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise _type_error(path, value, "a number", origins)
    if tp is str:
        if isinstance(value, str):
            return value
        raise _type_error(path, value, "a string (quote it in YAML)", origins)
    raise TypeError(f"schema type {tp!r} at '{path}' is not supported by umgkit.config")


def _type_error(path: str, value: Any, expected: str, origins: Mapping[str, str]) -> ConfigError:
    return ConfigError(_where(origins, path) + f"key '{path}' has value {value!r} "
                       f"({type(value).__name__}); expected {expected}.")


def _where(origins: Mapping[str, str], path: str) -> str:
    key = path.split("[", 1)[0]
    while key and key not in origins:
        key = key.rpartition(".")[0]
    source = origins.get(key)
    return f"{source}: " if source else ""


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
