"""BitFit (Ben Zaken et al., 2022): train only the bias terms.

Owned parameters are those whose last name component is ``bias`` or ends in ``_bias`` (this covers
``nn.MultiheadAttention.in_proj_bias``), restricted to the selected blocks unless ``scope="model"``.
Merging is a no-op: the biases already are the layers' own, so a saved BitFit adapter is just biases.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..errors import ConfigError
from ..registry import ADAPTERS
from ._base import Adapter, ScopeOptions
from ._structure import select_blocks

__all__ = ["BitFitAdapter", "BitFitConfig"]


@dataclass
class BitFitConfig(ScopeOptions):
    scope: str = "blocks"  # "blocks": biases inside the selected blocks; "model": every bias in the model

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.scope not in ("blocks", "model"):
            raise ConfigError(f"Adapter 'bitfit': scope={self.scope!r} is not valid; use 'blocks' or "
                              "'model'.")


@ADAPTERS.register("bitfit")
class BitFitAdapter(Adapter):
    """Train only bias terms (BitFit)."""

    method = "bitfit"
    config_cls = BitFitConfig
    mergeable = True

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self._prefixes: tuple[str, ...] | None = None

    def inject(self, model: nn.Module) -> None:
        if self.config.scope == "model":
            self._prefixes = ("",)
        else:
            blocks = select_blocks(model, self.config.tower, self.config.layers)
            self._prefixes = tuple(path + "." for path, _, _ in blocks)

    def owns(self, name: str) -> bool:
        last = name.rsplit(".", 1)[-1]
        if last != "bias" and not last.endswith("_bias"):
            return False
        if self._prefixes is None:
            raise RuntimeError("BitFit adapter used before apply(model).")
        return name.startswith(self._prefixes)

    def merge(self, model: nn.Module) -> nn.Module:
        return model
