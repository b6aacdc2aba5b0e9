"""LoRA on the query and value projections (Hu et al., 2021, section 7.1): fused qkv slices or separate
q / v layers, whichever each block has (read from the block, see ``_layout``).

peft adapts whole Linear layers; a ViT's ``attn.qkv`` (timm / umg) and open_clip's
``MultiheadAttention.in_proj_weight`` fuse q, k and v into one ``(3C, C)`` weight ordered q|k|v, so
LoRA-on-q-and-v needs its own module. Convention: the update is
``out = W x + [s * B_q A_q x, 0, s * B_v A_v x]`` with ``s = alpha / rank``; the k slice of the output is
the frozen layer's output, bit for bit. ``A`` starts Kaiming-uniform and ``B`` at zero, so an adapted model
starts equal to the frozen one. Parameter count per block: ``4 * rank * C``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from ..errors import ConfigError
from ..registry import ADAPTERS
from ._base import Adapter, AdapterWrapper, ScopeOptions, check_positive, unwrap_all
from ._layout import block_layout
from ._structure import get_submodule, select_blocks, set_submodule

__all__ = ["LoraQVAdapter", "LoraQVConfig", "LoraQVLinear", "LoraQVMultiheadAttention", "LoraQVSeparate"]

_PREFIX = "lora_qv_"


@dataclass
class LoraQVConfig(ScopeOptions):
    rank: int = 8  # r of each of the two low-rank updates (q and v)
    alpha: float = 8.0  # scaling s = alpha / rank (peft's default pairing r=8, alpha=8 gives s=1)
    dropout: float = 0.0  # dropout on the input of the low-rank branch (training only)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("lora_qv", rank=self.rank, alpha=self.alpha)
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"Adapter 'lora_qv': dropout={self.dropout} must be in [0, 1).")


class _QVDelta(AdapterWrapper):
    """Holds A_q, B_q, A_v, B_v for a width-C fused projection; subclasses define how it is applied."""

    def __init__(self, base_layer: nn.Module, width: int, rank: int, alpha: float, dropout: float) -> None:
        super().__init__(base_layer)
        self.width, self.rank, self.scaling = width, rank, alpha / rank
        ref = self._frozen_weight()
        kw = {"device": ref.device, "dtype": ref.dtype}
        self.lora_qv_A_q = nn.Parameter(torch.empty(rank, width, **kw))
        self.lora_qv_B_q = nn.Parameter(torch.zeros(width, rank, **kw))
        self.lora_qv_A_v = nn.Parameter(torch.empty(rank, width, **kw))
        self.lora_qv_B_v = nn.Parameter(torch.zeros(width, rank, **kw))
        for a in (self.lora_qv_A_q, self.lora_qv_A_v):
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))  # nn.Linear's (and peft's) init for A
        self.lora_qv_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def _frozen_weight(self) -> torch.Tensor:
        raise NotImplementedError

    def delta_weight(self) -> torch.Tensor:
        """The ``(3C, C)`` weight update; its k rows are exact zeros."""
        dq = self.lora_qv_B_q @ self.lora_qv_A_q * self.scaling
        dv = self.lora_qv_B_v @ self.lora_qv_A_v * self.scaling
        return torch.cat([dq, torch.zeros_like(dq), dv], dim=0)


class LoraQVLinear(_QVDelta):
    """Wraps a fused ``nn.Linear(C, 3C)``; adds the q and v updates to the q and v output slices."""

    def _frozen_weight(self) -> torch.Tensor:
        return self.base_layer.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)  # (..., 3C)
        q, k, v = out.split(self.width, dim=-1)
        h = self.lora_qv_dropout(x)
        q = q + (h @ self.lora_qv_A_q.t() @ self.lora_qv_B_q.t()) * self.scaling
        v = v + (h @ self.lora_qv_A_v.t() @ self.lora_qv_B_v.t()) * self.scaling
        return torch.cat([q, k, v], dim=-1)  # k untouched: bit-identical to the frozen layer

    def unwrap(self) -> nn.Module:
        with torch.no_grad():
            self.base_layer.weight.add_(self.delta_weight())
        return self.base_layer


class LoraQVMultiheadAttention(_QVDelta):
    """Wraps an ``nn.MultiheadAttention``; runs it with ``in_proj_weight + delta`` (q and v rows only).

    The attention's own forward is reused through ``torch.func.functional_call``, so masks, batch_first
    and fast paths behave exactly as in the frozen module. Input dropout is not applied here (the update
    is a weight, not a branch), so ``dropout`` must be 0 for this layer type.
    """

    def _frozen_weight(self) -> torch.Tensor:
        return self.base_layer.in_proj_weight

    def forward(self, *args, **kwargs):
        weight = self.base_layer.in_proj_weight + self.delta_weight()
        return functional_call(self.base_layer, {"in_proj_weight": weight}, args, kwargs)

    def unwrap(self) -> nn.Module:
        with torch.no_grad():
            self.base_layer.in_proj_weight.add_(self.delta_weight())
        return self.base_layer


class LoraQVSeparate(_QVDelta):
    """Wraps an attention module with separate q and v Linear layers (transformers' CLIP / SigLIP
    ``q_proj`` / ``v_proj``, timm's EVA built with ``qkv_fused=False`` as in open_clip's EVA02-CLIP); runs
    it with the q and v weights updated, the module's own forward unchanged. Like
    `LoraQVMultiheadAttention` the update is a weight, so input dropout must be 0."""

    def __init__(self, base_layer: nn.Module, width: int, rank: int, alpha: float, dropout: float, *,
                 q_name: str = "q_proj", v_name: str = "v_proj") -> None:
        self._q_name, self._v_name = q_name, v_name  # plain attributes: set before nn.Module's init
        super().__init__(base_layer, width, rank, alpha, dropout)

    def _frozen_weight(self) -> torch.Tensor:
        return self.base_layer.get_submodule(self._q_name).weight

    def _updated(self) -> dict[str, torch.Tensor]:
        dq = self.lora_qv_B_q @ self.lora_qv_A_q * self.scaling
        dv = self.lora_qv_B_v @ self.lora_qv_A_v * self.scaling
        q, v = (self.base_layer.get_submodule(n) for n in (self._q_name, self._v_name))
        return {f"{self._q_name}.weight": q.weight + dq, f"{self._v_name}.weight": v.weight + dv}

    def forward(self, *args, **kwargs):
        return functional_call(self.base_layer, self._updated(), args, kwargs)

    def unwrap(self) -> nn.Module:
        with torch.no_grad():
            for name, weight in self._updated().items():
                self.base_layer.get_parameter(name).copy_(weight)
        return self.base_layer


@ADAPTERS.register("lora_qv")
class LoraQVAdapter(Adapter):
    """LoRA on the q and v projections of each block (slices of a fused qkv, or separate q / v layers)."""

    method = "lora_qv"
    config_cls = LoraQVConfig
    mergeable = True

    def inject(self, model: nn.Module) -> None:
        c = self.config
        for path, block, _ in select_blocks(model, c.tower, c.layers):
            layout = block_layout(block)
            if layout.attention is None:
                others = "lora (on the block's MLP), ssf or bitfit" if layout.mlp else \
                    "lora (on the block's convolutions) or bitfit"
                raise ConfigError(f"{path} has no attention, so no q and v for lora_qv (the block holds "
                                  f"convolutions or an MLP only). Use {others}.")
            attn_path = f"{path}.{layout.attention}"
            if layout.qkv is not None:
                qkv = get_submodule(block, layout.qkv)
                if qkv.out_features != 3 * qkv.in_features:
                    raise ConfigError(f"{path}.{layout.qkv} is not a fused nn.Linear(C, 3C) (its heads are "
                                      "wider or narrower than C); lora_qv cannot split it into q|k|v slices. "
                                      "Use lora.")
                wrapped = LoraQVLinear(qkv, qkv.in_features, c.rank, c.alpha, c.dropout)
                set_submodule(model, f"{path}.{layout.qkv}", wrapped)
                continue
            if c.dropout:
                kind = "nn.MultiheadAttention" if layout.mha else "separate q / v projections"
                raise ConfigError(f"lora_qv on {attn_path} ({kind}) updates weights and cannot apply input "
                                  "dropout; set dropout=0.")
            attn = get_submodule(block, layout.attention)
            if layout.mha:
                if not attn._qkv_same_embed_dim or attn.in_proj_weight is None:
                    raise ConfigError(f"{attn_path} uses separate q/k/v weights (kdim/vdim != embed_dim); "
                                      "lora_qv needs a fused in_proj_weight.")
                wrapped = LoraQVMultiheadAttention(attn, attn.embed_dim, c.rank, c.alpha, c.dropout)
            else:
                q_name = layout.q.split(".", 1)[1]  # relative to the attention module
                v_name = layout.v.split(".", 1)[1]
                width = get_submodule(attn, q_name).in_features
                wrapped = LoraQVSeparate(attn, width, c.rank, c.alpha, c.dropout, q_name=q_name,
                                         v_name=v_name)
            set_submodule(model, attn_path, wrapped)

    def owns(self, name: str) -> bool:
        return name.rsplit(".", 1)[-1].startswith(_PREFIX)

    def merge(self, model: nn.Module) -> nn.Module:
        return unwrap_all(model, _QVDelta)
