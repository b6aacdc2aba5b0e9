"""Name -> builder registries shared by every umgkit component.

Everything a config names (backbones, adapters, heads, tasks, datasets) is created through one of the
registries below, so a user-facing string like ``"openclip:ViT-B-16"`` or ``"lora"`` always resolves
the same way and unknown names fail with a suggestion instead of a ``KeyError``.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .errors import ConfigError, at_key, close_matches, unknown_name

__all__ = ["Registry", "BACKBONES", "ADAPTERS", "HEADS", "MODELS", "TASKS", "DATASETS", "REGISTRIES"]


class Registry:
    """A named table of builders.

    A registered builder is any callable; ``build(name, **kwargs)`` calls it with keyword arguments.
    Names may carry a prefix separated by ``:`` (``"timm:vit_base_patch16_224"``): when the full name is
    not registered, the part before the colon is looked up and the rest is passed as ``name=``.

    Example:
        >>> reg = Registry("toys", "a toy builder returns any object")
        >>> @reg.register("double")
        ... def double(x: int) -> int:
        ...     return 2 * x
        >>> reg.build("double", x=4)
        8
    """

    def __init__(self, kind: str, contract: str, *, key: str | None = None, options_key: str | None = None,
                 errors_key: str | None = None) -> None:
        self.kind = kind
        self.contract = contract
        # Where a run config names an entry and its options, and under which key the config errors a
        # builder raises are reported (e.g. the value checks of an adapter's options).
        self.key, self.options_key, self.errors_key = key or kind, options_key, errors_key
        self._builders: dict[str, Callable[..., Any]] = {}
        self._docs: dict[str, str] = {}
        self._forwarded: dict[str, tuple[str, ...]] = {}

    def register(self, name: str, *, doc: str | None = None,
                 options: Iterable[str] = ()) -> Callable[[Callable], Callable]:
        """Decorator registering ``fn`` under ``name``; a name registered twice raises.

        ``options``: for a builder that passes ``**options`` on to a class, the names it accepts there,
        so `create` can check them like the builder's own keyword arguments.
        """

        def decorator(fn: Callable) -> Callable:
            self.add(name, fn, doc=doc, options=options)
            return fn

        return decorator

    def add(self, name: str, fn: Callable[..., Any], *, doc: str | None = None,
            options: Iterable[str] = ()) -> None:
        if name in self._builders:
            raise ValueError(f"{self.kind} registry: '{name}' is already registered by "
                             f"{_qualname(self._builders[name])}; pick another name.")
        self._builders[name] = fn
        self._docs[name] = doc if doc is not None else _first_line(fn.__doc__)
        self._forwarded[name] = tuple(options)

    def get(self, name: str) -> Callable[..., Any]:
        """The builder for ``name`` (exact name, else its ``prefix:``); raises with close matches."""
        return self._resolve(name)[0]

    def build(self, name: str, **kwargs: Any) -> Any:
        builder, extra = self._resolve(name)
        return builder(**extra, **kwargs)

    def create(self, name: str, options: Mapping[str, Any] | None = None, **supplied: Any) -> Any:
        """Build ``name`` with the user's ``options`` as a run config gives them (``model.head`` and
        ``model.head_options``, say); ``supplied`` are the arguments umgkit passes itself (backbone,
        num_classes, ...).

        An unknown name raises `UnknownNameError` under the registry's ``key``; an option the builder does
        not take raises `ConfigError` under its ``options_key``, with the valid options and the closest.
        Builders taking ``**options`` without declaring them validate them themselves (adapters do).
        """
        options = dict(options or {})
        with at_key(self.key):
            builder, extra = self._resolve(name)
        _check_options(builder, self._forwarded.get(name, ()), options, set(supplied) | set(extra),
                       f"{self.kind} '{name}'", self.options_key or f"{self.key}_options")
        with at_key(self.errors_key) if self.errors_key else contextlib.nullcontext():
            return builder(**extra, **supplied, **options)

    def _resolve(self, name: str) -> tuple[Callable[..., Any], dict[str, Any]]:
        if name in self._builders:
            return self._builders[name], {}
        if ":" in name:
            prefix, rest = name.split(":", 1)
            if prefix + ":" in self._builders:
                return self._builders[prefix + ":"], {"name": rest}
        raise unknown_name(self.kind, name, self.names(), f"Registered {self.kind}s: "
                           f"{_short_list(self.names())} (`umgkit list {self.kind}s`).")

    def names(self) -> list[str]:
        return sorted(self._builders)

    def describe(self) -> list[tuple[str, str]]:
        """``(name, one-line description)`` for every entry, sorted by name."""
        return [(n, self._docs[n]) for n in self.names()]

    def __contains__(self, name: str) -> bool:
        try:
            self.get(name)
        except KeyError:
            return False
        return True

    def __len__(self) -> int:
        return len(self._builders)


def _check_options(builder: Callable, forwarded: tuple[str, ...], options: Mapping[str, Any],
                   supplied: set[str], what: str, key: str) -> None:
    """Options the builder does not take raise, listing the ones it does (closest first).

    The builder's keyword arguments count, plus what it declared it forwards; a builder taking
    ``**options`` without declaring them checks its options itself.
    """
    params = inspect.signature(builder).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params) and not forwarded:
        return
    valid = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
             and p.name not in supplied] + [n for n in forwarded if n not in supplied]
    unknown = [k for k in options if k not in valid]
    if unknown:
        hints = [f"'{k}'" + (f" (did you mean '{m[0]}'?)" if (m := close_matches(k, valid, n=1)) else "")
                 for k in unknown]
        raise ConfigError(f"unknown option(s) for {what}: {', '.join(hints)}. Valid options: "
                          f"{', '.join(valid) or '(none)'}; see docs/config_reference.md.", key=key)


def _short_list(names: Iterable[str], limit: int = 20) -> str:
    names = list(names)
    if not names:
        return "(none)"
    more = f", ... (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0] if (doc or "").strip() else ""


def _qualname(fn: Callable) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


BACKBONES = Registry("backbone", "returns a frozen nn.Module honouring the backbone contract (DESIGN.md)",
                     key="model.backbone", errors_key="model.backbone")
ADAPTERS = Registry("adapter", "returns an Adapter that applies a PET method to a backbone in place",
                    key="model.adapter", options_key="model.adapter_options",
                    errors_key="model.adapter_options")
HEADS = Registry("head", "returns an nn.Module task decoder built from a backbone's declared output shapes",
                 key="model.head", options_key="model.head_options", errors_key="model.head_options")
MODELS = Registry("model", "the umgkit.models.TaskModel subclass of one task (register the class itself): "
                           "from_config(cfg, class_names) builds it reading no dataset; predict() gives its "
                           "`prediction` type, whose `writer` writes umgkit predict's files", key="task")
TASKS = Registry("task", "returns an object with the engine's Task interface (umgkit.engine.Task)",
                 key="task", options_key="task_options")
DATASETS = Registry("dataset", "returns a torch Dataset whose items are dicts of tensors and metadata",
                    key="data.format", options_key="data.options", errors_key="data.options")

REGISTRIES = {"backbones": BACKBONES, "adapters": ADAPTERS, "heads": HEADS, "models": MODELS, "tasks": TASKS,
              "datasets": DATASETS}
