"""The `Adapter` contract shared by every PET method, option parsing, and the module-wrapper base.

Conventions every method follows:
- ``apply(model)`` changes ``model`` in place, then freezes every parameter except those the method
  *owns*. Ownership is decided from the parameter's dotted name alone (`Adapter.owns`), usually a unique
  name component (``lora_qv_A_q``, ``adaptformer``, ``vpt_prompt``, ``ssf_scale``), so counting, saving
  and loading never depend on ``requires_grad`` flags a user may have flipped.
- ``adapter_state_dict(model)`` holds exactly the owned parameters, keyed by their names in ``model``.
- ``merge(model)`` folds the method into the frozen weights and removes its modules, where the maths
  allows (``mergeable``); otherwise it raises.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn

from .._tensors import copy_named
from ..errors import ConfigError, close_matches

__all__ = ["Adapter", "AdapterWrapper", "ScopeOptions", "check_positive", "check_targets", "parse_options",
           "config_to_dict", "unwrap_all"]


@dataclasses.dataclass
class ScopeOptions:
    """Options shared by the methods that act on transformer blocks."""

    tower: str = "vision"  # "vision", "text" or "all": which block lists of a dual encoder to adapt
    layers: tuple[int, ...] | None = None  # block indices within each list (negative from end); None = all

    def __post_init__(self) -> None:
        if self.tower not in ("vision", "text", "all"):
            raise ConfigError(f"option tower={self.tower!r} is not valid; choose 'vision', 'text' or 'all'.")
        if self.layers is not None:
            if isinstance(self.layers, int):
                self.layers = (self.layers,)
            self.layers = tuple(int(i) for i in self.layers)


def check_positive(method: str, **values: float) -> None:
    """Raise a ConfigError naming the first option that is not > 0."""
    for key, value in values.items():
        if not value > 0:
            raise ConfigError(f"Adapter '{method}': option {key}={value!r} must be > 0.")


def check_targets(method: str, targets: Any) -> tuple[str, ...] | None:
    """Normalise a target list (a string becomes a one-item tuple); None means the method's default."""
    if targets is None:
        return None
    if isinstance(targets, str):
        targets = (targets,)
    targets = tuple(targets)
    if not targets or not all(isinstance(t, str) and t for t in targets):
        raise ConfigError(f"Adapter '{method}': target_modules must be a non-empty list of block-relative "
                          f"module paths such as ['attn.qkv', 'mlp.fc1'], got {targets!r}.")
    return targets


def parse_options(config_cls: type, options: dict[str, Any], method: str) -> Any:
    """Build ``config_cls(**options)``; an unknown key raises a ConfigError naming the valid options."""
    valid = [f.name for f in dataclasses.fields(config_cls)]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        hints = []
        for key in unknown:
            close = close_matches(key, valid, n=1)
            hints.append(f"'{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        raise ConfigError(f"unknown option(s) for adapter '{method}': {', '.join(hints)}. "
                          f"Valid options: {', '.join(valid) or '(none)'}.")
    return config_cls(**options)


def config_to_dict(config: Any) -> dict[str, Any]:
    """JSON-ready options (tuples become lists)."""

    def plain(v: Any) -> Any:
        return [plain(x) for x in v] if isinstance(v, (tuple, list)) else v

    return {k: plain(v) for k, v in dataclasses.asdict(config).items()}


class Adapter:
    """One PET method bound to its validated options. Subclasses set ``method``, ``config_cls`` and
    implement `inject` and `owns` (and `merge` when ``mergeable``)."""

    method: ClassVar[str] = ""
    config_cls: ClassVar[type]
    mergeable: ClassVar[bool] = False
    # Whether the method changes what ``encode_image`` returns. When it does not (frozen; the text-side
    # prompt methods), a classifier can train on image features computed once (the feature cache).
    changes_image_features: ClassVar[bool] = True

    def __init__(self, **options: Any) -> None:
        self.config = parse_options(self.config_cls, options, self.method)
        self.class_names: list[str] | None = None

    def bind_class_names(self, names: list[str] | None) -> None:
        """The task's class list, given before `apply` (methods with per-class parameters size them)."""
        self.class_names = None if names is None else list(names)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"

    @property
    def options(self) -> dict[str, Any]:
        return config_to_dict(self.config)

    # -- to implement -------------------------------------------------------------------------------
    def inject(self, model: nn.Module) -> None:
        """Insert the method's modules / parameters into ``model`` in place."""
        raise NotImplementedError

    def owns(self, name: str) -> bool:
        """Whether the parameter called ``name`` (dotted, relative to the model) belongs to the method."""
        raise NotImplementedError

    def merge(self, model: nn.Module) -> nn.Module:
        raise NotImplementedError(
            f"Adapter '{self.method}' cannot be merged into the frozen weights (its computation is not a "
            "weight update). Mergeable methods: lora, dora, loha, lokr, lora_qv, ssf, bitfit, frozen, full.")

    # -- shared ---------------------------------------------------------------------------------------
    def apply(self, model: nn.Module) -> nn.Module:
        """Inject the method, then make exactly the owned parameters trainable. Returns ``model``."""
        self.inject(model)
        for name, param in model.named_parameters():
            param.requires_grad_(self.owns(name))
        return model

    def adapter_state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The owned parameters, detached, keyed by their names in ``model``."""
        return {n: p.detach() for n, p in model.named_parameters() if self.owns(n)}

    def load_adapter_state_dict(self, model: nn.Module, state: dict[str, torch.Tensor]) -> None:
        """Copy ``state`` into the owned parameters; the key sets and shapes must match exactly."""
        copy_named({n: p for n, p in model.named_parameters() if self.owns(n)}, state,
                   source=f"Adapter '{self.method}' weights",
                   fix="Was it saved from a different backbone or with other options?")


class AdapterWrapper(nn.Module):
    """Base of the modules that wrap a frozen layer (kept as ``base_layer``, as peft names it).

    Attributes the wrapper lacks are looked up on ``base_layer`` so code that reads e.g.
    ``block.attn.batch_first`` or ``block.mlp.c_fc`` keeps working after wrapping.
    """

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__()
        self.base_layer = base_layer

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "base_layer":
                raise
            return getattr(self.base_layer, name)

    def unwrap(self) -> nn.Module:
        """The frozen layer with the wrapper's effect folded in (mergeable wrappers override)."""
        raise NotImplementedError


def unwrap_all(model: nn.Module, wrapper_cls: type) -> nn.Module:
    """Replace every ``wrapper_cls`` module by its ``unwrap()`` result (deepest first). Returns model."""
    from ._structure import set_submodule

    found = [(n, m) for n, m in model.named_modules() if isinstance(m, wrapper_cls)]
    for name, module in sorted(found, key=lambda nm: -nm[0].count(".")):
        set_submodule(model, name, module.unwrap())
    return model
