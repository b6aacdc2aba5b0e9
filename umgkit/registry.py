"""Name -> builder registries shared by every umgkit component.

Everything a config names (backbones, adapters, heads, tasks, datasets) is created through one of the
registries below, so a user-facing string like ``"openclip:ViT-B-16"`` or ``"lora"`` always resolves
the same way and unknown names fail with a suggestion instead of a ``KeyError``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import Any

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

    def __init__(self, kind: str, contract: str) -> None:
        self.kind = kind
        self.contract = contract
        self._builders: dict[str, Callable[..., Any]] = {}
        self._docs: dict[str, str] = {}

    def register(self, name: str, *, doc: str | None = None) -> Callable[[Callable], Callable]:
        """Decorator registering ``fn`` under ``name``; a name registered twice raises."""

        def decorator(fn: Callable) -> Callable:
            self.add(name, fn, doc=doc)
            return fn

        return decorator

    def add(self, name: str, fn: Callable[..., Any], *, doc: str | None = None) -> None:
        if name in self._builders:
            raise ValueError(f"{self.kind} registry: '{name}' is already registered by "
                             f"{_qualname(self._builders[name])}; pick another name.")
        self._builders[name] = fn
        self._docs[name] = doc if doc is not None else _first_line(fn.__doc__)

    def get(self, name: str) -> Callable[..., Any]:
        """The builder for ``name`` (exact name, else its ``prefix:``); raises with close matches."""
        if name in self._builders:
            return self._builders[name]
        prefix = name.split(":", 1)[0] + ":" if ":" in name else None
        if prefix is not None and prefix in self._builders:
            return self._builders[prefix]
        raise KeyError(self._unknown_message(name))

    def build(self, name: str, **kwargs: Any) -> Any:
        if name not in self._builders and ":" in name:
            prefix, rest = name.split(":", 1)
            if prefix + ":" in self._builders:
                return self._builders[prefix + ":"](name=rest, **kwargs)
        return self.get(name)(**kwargs)

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

    def _unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, self.names(), n=3, cutoff=0.4)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        return (f"Unknown {self.kind} '{name}'.{hint} Registered {self.kind}s: "
                f"{_short_list(self.names())}. `umgkit list {self.kind}s` prints them all.")


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


BACKBONES = Registry("backbone", "returns a frozen nn.Module honouring the backbone contract (DESIGN.md)")
ADAPTERS = Registry("adapter", "returns an Adapter that applies a PET method to a backbone in place")
HEADS = Registry("head", "returns an nn.Module task decoder built from a backbone's declared output shapes")
MODELS = Registry("model", "returns a umgkit.models.TaskModel (backbone + adapter + head) for one task, "
                             "from (cfg, class_names), reading no dataset")
TASKS = Registry("task", "returns an object with the engine's Task interface (umgkit.engine.Task)")
DATASETS = Registry("dataset", "returns a torch Dataset whose items are dicts of tensors and metadata")

REGISTRIES = {"backbones": BACKBONES, "adapters": ADAPTERS, "heads": HEADS, "models": MODELS, "tasks": TASKS,
              "datasets": DATASETS}
