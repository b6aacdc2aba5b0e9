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
QKV = ("q", "k", "v")


@dataclass
class LoraQVConfig(ScopeOptions):
    rank: int = 8  # r of each of the two low-rank updates (q and v)
    alpha: float = 8.0  # scaling s = alpha / rank (peft's default pairing r=8, alpha=8 gives s=1)
    dropout: float = 0.0  # dropout on the input of the low-rank branch (training only)
    parts: tuple[str, ...] = ("q", "v")  # which of the q, k, v projections get an update

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self.method_name, rank=self.rank, alpha=self.alpha)
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"Adapter '{self.method_name}': dropout={self.dropout} must be in [0, 1).")
        parts = (self.parts,) if isinstance(self.parts, str) else tuple(self.parts)
        if not parts or any(p not in QKV for p in parts) or len(set(parts)) != len(parts):
            raise ConfigError(f"Adapter '{self.method_name}': parts={list(parts)} must be distinct items of "
                              "q, k, v.")
        self.parts = tuple(p for p in QKV if p in parts)

    @property
    def method_name(self) -> str:
        return "lora_qv"


class _QVDelta(AdapterWrapper):
    """Holds ``lora_qv_A_<p>, lora_qv_B_<p>`` for each adapted part ``p`` of q, k, v (width C); subclasses
    define how the updates are applied."""

    def __init__(self, base_layer: nn.Module, width: int, rank: int, alpha: float, dropout: float,
                 parts: tuple[str, ...] = ("q", "v")) -> None:
        super().__init__(base_layer)
        self.width, self.rank, self.scaling, self.parts = width, rank, alpha / rank, tuple(parts)
        ref = self._frozen_weight()
        kw = {"device": ref.device, "dtype": ref.dtype}
        for part in self.parts:  # A then B per part, q before k before v: the init draws in that order
            a = nn.Parameter(torch.empty(rank, width, **kw))
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))  # nn.Linear's (and peft's) init for A
            setattr(self, f"{_PREFIX}A_{part}", a)
            setattr(self, f"{_PREFIX}B_{part}", nn.Parameter(torch.zeros(width, rank, **kw)))
        self.lora_qv_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def _frozen_weight(self) -> torch.Tensor:
        raise NotImplementedError

    def part_delta(self, part: str) -> torch.Tensor | None:
        """``(C, C)`` update of one projection, or None when ``part`` is not adapted."""
        if part not in self.parts:
            return None
        return getattr(self, f"{_PREFIX}B_{part}") @ getattr(self, f"{_PREFIX}A_{part}") * self.scaling

    def delta_weight(self) -> torch.Tensor:
        """The ``(3C, C)`` weight update; rows of parts not adapted are exact zeros."""
        ref = self._frozen_weight()
        zero = torch.zeros(self.width, self.width, device=ref.device, dtype=ref.dtype)
        return torch.cat([d if (d := self.part_delta(p)) is not None else zero for p in QKV], dim=0)


class LoraQVLinear(_QVDelta):
    """Wraps a fused ``nn.Linear(C, 3C)``; adds the q and v updates to the q and v output slices."""

    def _frozen_weight(self) -> torch.Tensor:
        return self.base_layer.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)  # (..., 3C)
        h = self.lora_qv_dropout(x)
        slices = []
        for part, y in zip(QKV, out.split(self.width, dim=-1), strict=True):
            if part in self.parts:
                a, b = getattr(self, f"{_PREFIX}A_{part}"), getattr(self, f"{_PREFIX}B_{part}")
                y = y + (h @ a.t() @ b.t()) * self.scaling
            slices.append(y)  # parts not adapted: bit-identical to the frozen layer
        return torch.cat(slices, dim=-1)

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

    def __init__(self, base_layer: nn.Module, width: int, rank: int, alpha: float, dropout: float,
                 parts: tuple[str, ...] = ("q", "v"), *, names: dict[str, str]) -> None:
        self._names = dict(names)  # part -> projection path in the attention; set before nn.Module's init
        super().__init__(base_layer, width, rank, alpha, dropout, parts)

    def _frozen_weight(self) -> torch.Tensor:
        return self.base_layer.get_submodule(self._names[self.parts[0]]).weight

    def _updated(self) -> dict[str, torch.Tensor]:
        return {f"{self._names[p]}.weight": self.base_layer.get_submodule(self._names[p]).weight
                + self.part_delta(p) for p in self.parts}

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
        c, m = self.config, self.method
        wanted = " and ".join([", ".join(c.parts[:-1]), c.parts[-1]] if len(c.parts) > 1 else c.parts)
        for path, block in self._blocks(model):
            layout = block_layout(block)
            if layout.attention is None:
                others = "lora (on the block's MLP), ssf or bitfit" if layout.mlp else \
                    "lora (on the block's convolutions) or bitfit"
                raise ConfigError(f"{path} has no attention, so no {wanted} for {m} (the block "
                                  f"holds convolutions or an MLP only). Use {others}.")
            attn_path = f"{path}.{layout.attention}"
            args = (c.rank, c.alpha, c.dropout, c.parts)
            if layout.qkv is not None:
                qkv = get_submodule(block, layout.qkv)
                if qkv.out_features != 3 * qkv.in_features:
                    raise ConfigError(f"{path}.{layout.qkv} is not a fused nn.Linear(C, 3C) (its heads are "
                                      f"wider or narrower than C); {m} cannot split it into q|k|v slices. "
                                      "Use lora.")
                set_submodule(model, f"{path}.{layout.qkv}", LoraQVLinear(qkv, qkv.in_features, *args))
                continue
            if c.dropout:
                kind = "nn.MultiheadAttention" if layout.mha else "separate q / k / v projections"
                raise ConfigError(f"{m} on {attn_path} ({kind}) updates weights and cannot apply input "
                                  "dropout; set dropout=0.")
            attn = get_submodule(block, layout.attention)
            if layout.mha:
                if not attn._qkv_same_embed_dim or attn.in_proj_weight is None:
                    raise ConfigError(f"{attn_path} uses separate q/k/v weights (kdim/vdim != embed_dim); "
                                      f"{m} needs a fused in_proj_weight.")
                wrapped = LoraQVMultiheadAttention(attn, attn.embed_dim, *args)
            else:
                paths = {"q": layout.q, "k": layout.k, "v": layout.v}
                missing = [p for p in c.parts if paths[p] is None]
                if missing:
                    raise ConfigError(f"{attn_path} has no separate {'/'.join(missing)} projection for {m}.")
                names = {p: paths[p].split(".", 1)[1] for p in c.parts}  # relative to the attention module
                width = get_submodule(attn, names[c.parts[0]]).in_features
                wrapped = LoraQVSeparate(attn, width, *args, names=names)
            set_submodule(model, attn_path, wrapped)

    def _blocks(self, model: nn.Module) -> list[tuple[str, nn.Module]]:
        """``(path, block)`` of the blocks to adapt (``tower`` and ``layers``; subclasses may narrow it)."""
        c = self.config
        return [(path, block) for path, block, _ in select_blocks(model, c.tower, c.layers)]

    def owns(self, name: str) -> bool:
        return name.rsplit(".", 1)[-1].startswith(_PREFIX)

    def merge(self, model: nn.Module) -> nn.Module:
        return unwrap_all(model, _QVDelta)
