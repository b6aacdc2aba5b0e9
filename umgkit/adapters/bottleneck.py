"""Bottleneck adapters: AdaptFormer (parallel, Chen et al., 2022) and the sequential Houlsby-style adapter.

Both use ``up(act(down(h)))`` with a zero-initialised up-projection, so an adapted model starts equal to the
frozen one. Parameter count per bottleneck: ``C*r + r + r*C + C``.

- ``adaptformer`` wraps each block's ``mlp``: ``mlp'(h) = mlp(h) + s * up(relu(down(h)))`` where ``h`` is the
  MLP's input (``norm2(x)``), so the block computes ``x + mlp(norm2(x)) + s * branch(norm2(x))``.
- ``adapter`` wraps a sub-layer and transforms its output: ``f'(h) = f(h) + s * up(act(down(f(h))))``, i.e.
  the adapter sits after the MLP (and optionally after attention), inside the block's residual.

Neither is a weight update (there is a non-linearity), so neither merges.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from ..registry import ADAPTERS
from ._base import Adapter, AdapterWrapper, ScopeOptions, check_positive
from ._layout import block_layout
from ._structure import block_width, select_blocks, set_submodule

__all__ = ["AdaptFormerAdapter", "AdaptFormerConfig", "SequentialAdapter", "SequentialAdapterConfig",
           "Bottleneck", "ParallelBottleneck", "SequentialBottleneck"]

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}


class Bottleneck(nn.Module):
    """``up(act(down(h)))`` with ``up`` zero-initialised; ``down`` keeps nn.Linear's default init."""

    def __init__(self, width: int, hidden: int, activation: str = "relu",
                 device: torch.device | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.down = nn.Linear(width, hidden, device=device, dtype=dtype)
        self.act = _ACTIVATIONS[activation]()
        self.up = nn.Linear(hidden, width, device=device, dtype=dtype)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.up(self.act(self.down(h)))


def _ref(module: nn.Module) -> dict:
    p = next(module.parameters())
    return {"device": p.device, "dtype": p.dtype}


class ParallelBottleneck(AdapterWrapper):
    """AdaptFormer: the branch reads the wrapped layer's input and is added to its output."""

    def __init__(self, base_layer: nn.Module, width: int, hidden: int, scale: float) -> None:
        super().__init__(base_layer)
        self.scale = scale
        self.adaptformer = Bottleneck(width, hidden, "relu", **_ref(base_layer))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.base_layer(h) + self.scale * self.adaptformer(h)


class SequentialBottleneck(AdapterWrapper):
    """Houlsby adapter on a sub-layer's output (a tensor, or the first item of MultiheadAttention's tuple)."""

    def __init__(self, base_layer: nn.Module, width: int, hidden: int, scale: float, activation: str) -> None:
        super().__init__(base_layer)
        self.scale = scale
        self.seq_adapter = Bottleneck(width, hidden, activation, **_ref(base_layer))

    def forward(self, *args, **kwargs):
        out = self.base_layer(*args, **kwargs)
        if isinstance(out, tuple):  # nn.MultiheadAttention returns (output, weights)
            return (out[0] + self.scale * self.seq_adapter(out[0]),) + out[1:]
        return out + self.scale * self.seq_adapter(out)


def _require_mlp(path: str, block: nn.Module, method: str) -> None:
    if not block_layout(block).mlp:
        raise ConfigError(f"{method} needs a block's token MLP to attach its bottleneck to; {path} has "
                          "none (a convolution-only block, such as a ResNet's). Use lora (on its "
                          "convolutions) or bitfit.")


@dataclass
class AdaptFormerConfig(ScopeOptions):
    bottleneck: int = 64  # hidden width r of the branch (AdaptFormer's default for ViT-B)
    scale: float = 0.1  # s multiplying the branch (the paper's fixed scale for ViTs)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("adaptformer", bottleneck=self.bottleneck)


@ADAPTERS.register("adaptformer")
class AdaptFormerAdapter(Adapter):
    """AdaptFormer: a scaled bottleneck in parallel with each block's MLP."""

    method = "adaptformer"
    config_cls = AdaptFormerConfig

    def inject(self, model: nn.Module) -> None:
        c = self.config
        for path, block, bl in select_blocks(model, c.tower, c.layers):
            _require_mlp(path, block, "AdaptFormer")
            if isinstance(getattr(block.mlp, "fc1", None), nn.Conv2d):
                raise ConfigError(f"{path}.mlp is convolutional (channels-first 1x1 convs, timm's conv_mlp); "
                                  "AdaptFormer's bottleneck reads token features. Use lora or bitfit here.")
            width = block_width(block, bl.style)
            set_submodule(model, f"{path}.mlp", ParallelBottleneck(block.mlp, width, c.bottleneck, c.scale))

    def owns(self, name: str) -> bool:
        return ".adaptformer." in f".{name}"


@dataclass
class SequentialAdapterConfig(ScopeOptions):
    bottleneck: int = 64  # hidden width r of each adapter
    scale: float = 1.0  # multiplier of the adapter output (Houlsby: 1)
    positions: tuple[str, ...] = ("mlp",)  # sub-layers followed by an adapter: "mlp" and/or "attn"
    activation: str = "gelu"  # "gelu" or "relu"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("adapter", bottleneck=self.bottleneck)
        self.positions = (self.positions,) if isinstance(self.positions, str) else tuple(self.positions)
        bad = [p for p in self.positions if p not in ("mlp", "attn")]
        if bad or not self.positions:
            raise ConfigError(f"Adapter 'adapter': positions={list(self.positions)} must be a non-empty "
                              "subset of ['mlp', 'attn'].")
        if self.activation not in _ACTIVATIONS:
            raise ConfigError(f"Adapter 'adapter': activation={self.activation!r}; choose one of "
                              f"{', '.join(_ACTIVATIONS)}.")


@ADAPTERS.register("adapter")
class SequentialAdapter(Adapter):
    """Sequential (Houlsby) bottleneck adapter after each block's MLP (and optionally attention)."""

    method = "adapter"
    config_cls = SequentialAdapterConfig

    def inject(self, model: nn.Module) -> None:
        c = self.config
        for path, block, bl in select_blocks(model, c.tower, c.layers):
            _require_mlp(path, block, "The sequential adapter")
            width = block_width(block, bl.style)
            if bl.style == "hf" and "attn" in c.positions:
                raise ConfigError(f"{path}: positions=['attn'] needs an attention module that returns one "
                                  "tensor; transformers layers return a tuple. Use positions=['mlp'].")
            for pos in c.positions:
                wrapped = SequentialBottleneck(getattr(block, pos), width, c.bottleneck, c.scale,
                                               c.activation)
                set_submodule(model, f"{path}.{pos}", wrapped)

    def owns(self, name: str) -> bool:
        return ".seq_adapter." in f".{name}"
