"""The two reference points of every PET table: ``frozen`` (nothing in the backbone trains; a linear
probe on top) and ``full`` (every parameter trains). Both merge trivially: nothing to fold."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..registry import ADAPTERS
from ._base import Adapter

__all__ = ["FrozenAdapter", "FullAdapter"]


@dataclass
class BaselineConfig:
    """No options."""


@ADAPTERS.register("frozen")
class FrozenAdapter(Adapter):
    """Freeze the whole backbone (linear-probe baseline); saves nothing."""

    method = "frozen"
    config_cls = BaselineConfig
    mergeable = True
    changes_image_features = False

    def inject(self, model: nn.Module) -> None:
        pass

    def owns(self, name: str) -> bool:
        return False

    def merge(self, model: nn.Module) -> nn.Module:
        return model


@ADAPTERS.register("full")
class FullAdapter(Adapter):
    """Train every parameter (full fine-tuning baseline); saves the whole model."""

    method = "full"
    config_cls = BaselineConfig
    mergeable = True

    def inject(self, model: nn.Module) -> None:
        pass

    def owns(self, name: str) -> bool:
        return True

    def merge(self, model: nn.Module) -> nn.Module:
        return model
