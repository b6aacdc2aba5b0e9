"""SSF (Lian et al., 2022): a learnable per-channel scale and shift after chosen layers.

``y' = y * ssf_scale + ssf_shift`` with scale initialised to 1 and shift to 0 (the model starts unchanged).
Targets are block-relative paths; the default, read from each block's layout, is every affine LayerNorm
of the block, its attention projections and its MLP layers. Supported layer types and how each merges:

- ``nn.Linear``: ``W' = diag(s) W``, ``b' = s * b + t``.
- a LayerNorm with affine weights (timm ``norm1``/``norm2``, open_clip ``ln_1``/``ln_2``):
  ``w' = s * w``, ``b' = s * b + t``.
- ``nn.MultiheadAttention`` (open_clip ``attn``): scale/shift after the in-projection (3C channels, q|k|v)
  and after the out-projection (C channels). Its forward never calls ``out_proj`` as a module, so the
  wrapper runs the attention with the folded weights through ``torch.func.functional_call``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from ..errors import ConfigError
from ..registry import ADAPTERS
from ._base import Adapter, AdapterWrapper, ScopeOptions, check_targets, unwrap_all
from ._layout import BlockLayout
from ._structure import block_targets, set_submodule

__all__ = ["SSFAdapter", "SSFConfig", "SSFLayer", "SSFMultiheadAttention"]

def default_targets(path: str, layout: BlockLayout) -> tuple[str, ...]:
    """The block's affine LayerNorms, its attention (projections, or the MHA module) and its MLP layers."""
    attention = (layout.attention,) if layout.mha else layout.attention_projections
    targets = layout.norms + attention + layout.mlp
    if not targets:
        raise ConfigError(f"Adapter 'ssf': block {path} has no LayerNorm, attention or MLP layer to follow "
                          "with a scale and shift (a convolution-only block, such as a ResNet's); use lora "
                          "(on its convolutions) or bitfit.")
    return targets


def _fold(weight: torch.Tensor, bias: torch.Tensor | None, scale: torch.Tensor, shift: torch.Tensor):
    """(diag(s) W, s*b + t) for a weight whose first dimension is the output channel."""
    w = weight * scale.reshape(-1, *([1] * (weight.dim() - 1)))
    b = shift if bias is None else bias * scale + shift
    return w, b


def _scale_shift(channels: int, ref: torch.Tensor) -> tuple[nn.Parameter, nn.Parameter]:
    kw = {"device": ref.device, "dtype": ref.dtype}
    return nn.Parameter(torch.ones(channels, **kw)), nn.Parameter(torch.zeros(channels, **kw))


class SSFLayer(AdapterWrapper):
    """Scale and shift the output channels (last dimension) of a Linear or affine LayerNorm."""

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__(base_layer)
        channels = base_layer.weight.shape[0]
        self.ssf_scale, self.ssf_shift = _scale_shift(channels, base_layer.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base_layer(x) * self.ssf_scale + self.ssf_shift

    def unwrap(self) -> nn.Module:
        base = self.base_layer
        w, b = _fold(base.weight, base.bias, self.ssf_scale, self.ssf_shift)
        with torch.no_grad():
            base.weight.copy_(w)
            if base.bias is None:
                base.bias = nn.Parameter(b.detach().clone(), requires_grad=False)
            else:
                base.bias.copy_(b)
        return base


class SSFMultiheadAttention(AdapterWrapper):
    """SSF after an ``nn.MultiheadAttention``'s in- and out-projection, applied as folded weights."""

    def __init__(self, base_layer: nn.MultiheadAttention) -> None:
        super().__init__(base_layer)
        ref = base_layer.in_proj_weight
        self.ssf_scale_in, self.ssf_shift_in = _scale_shift(ref.shape[0], ref)
        self.ssf_scale, self.ssf_shift = _scale_shift(base_layer.out_proj.weight.shape[0], ref)

    def folded(self) -> dict[str, torch.Tensor]:
        base = self.base_layer
        w_in, b_in = _fold(base.in_proj_weight, base.in_proj_bias, self.ssf_scale_in, self.ssf_shift_in)
        w_out, b_out = _fold(base.out_proj.weight, base.out_proj.bias, self.ssf_scale, self.ssf_shift)
        return {"in_proj_weight": w_in, "in_proj_bias": b_in,
                "out_proj.weight": w_out, "out_proj.bias": b_out}

    def forward(self, *args, **kwargs):
        return functional_call(self.base_layer, self.folded(), args, kwargs)

    def unwrap(self) -> nn.Module:
        base = self.base_layer
        if base.in_proj_bias is None or base.out_proj.bias is None:
            raise ConfigError("Merging SSF into a MultiheadAttention without biases is not supported.")
        folded = self.folded()
        with torch.no_grad():
            for name, value in folded.items():
                base.get_parameter(name).copy_(value)
        return base


def _is_affine_layernorm(module: nn.Module) -> bool:
    return isinstance(module, nn.LayerNorm) and module.weight is not None and module.bias is not None


@dataclass
class SSFConfig(ScopeOptions):
    target_modules: tuple[str, ...] | None = None  # block-relative layers to follow with SSF; None = all

    def __post_init__(self) -> None:
        super().__post_init__()
        self.target_modules = check_targets("ssf", self.target_modules)


@ADAPTERS.register("ssf")
class SSFAdapter(Adapter):
    """SSF: learnable per-channel scale and shift after Linear / LayerNorm / attention layers."""

    method = "ssf"
    config_cls = SSFConfig
    mergeable = True

    def inject(self, model: nn.Module) -> None:
        c = self.config
        for path, module, _ in block_targets(model, c.tower, c.layers, c.target_modules, default_targets):
            if isinstance(module, nn.MultiheadAttention):
                if not module._qkv_same_embed_dim or module.in_proj_bias is None:
                    raise ConfigError(f"{path}: SSF supports MultiheadAttention with a fused, biased "
                                      "in-projection only.")
                set_submodule(model, path, SSFMultiheadAttention(module))
            elif isinstance(module, nn.Linear) or _is_affine_layernorm(module):
                set_submodule(model, path, SSFLayer(module))
            else:
                raise ConfigError(f"{path} is a {type(module).__name__}; SSF targets nn.Linear, affine "
                                  "LayerNorm or nn.MultiheadAttention layers.")

    def owns(self, name: str) -> bool:
        return name.rsplit(".", 1)[-1].startswith("ssf_")

    def merge(self, model: nn.Module) -> nn.Module:
        return unwrap_all(model, (SSFLayer, SSFMultiheadAttention))
