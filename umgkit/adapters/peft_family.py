"""peft's LoRA family (LoRA, DoRA, LoHa, LoKr) as umgkit adapters: peft does the work, umgkit chooses targets.

Targets are block-relative paths resolved structurally in every selected block, then passed to peft as
exact module names (so peft's saved ``adapter_config.json`` lists them and ``peft.PeftModel.from_pretrained``
finds the same layers on a fresh copy of the base model). The default follows each block's own layout
(`umgkit.adapters._layout`), the first of these that the block has:

1. the attention's projections: the fused ``attn.qkv`` or the separate q / k / v projections (timm's EVA
   with ``qkv_fused=False`` as open_clip builds EVA02-CLIP, transformers' ``self_attn.*_proj``), plus the
   output projection. For an ``nn.MultiheadAttention`` (open_clip) LoRA wraps the module itself (in- and
   out-projection together); DoRA / LoHa / LoKr, which peft does not support there, go to step 2.
2. the MLP's Linear layers (``mlp.fc1, mlp.fc2``; SwiGLU ``fc1_g, fc1_x, fc2``; open_clip ``c_fc, c_proj``):
   ConvNeXt blocks, and open_clip blocks for DoRA / LoHa / LoKr.
3. the block's own convolutions (ResNet ``conv1, conv2[, conv3]``; the shortcut's projection is left
   frozen): peft's LoRA, DoRA, LoHa and LoKr all wrap ``nn.Conv2d``. A LoRA pair on a k x k conv is
   ``A: Conv2d(in, r, k)`` then ``B: Conv2d(r, out, 1)``, ``r * in * k * k + out * r`` parameters.

A layer *inside* an ``nn.MultiheadAttention`` (``attn.out_proj``) is refused: that module's forward reads
``out_proj.weight`` directly, so wrapping it would silently do nothing.

Checkpoints use peft's own format (keys ``base_model.model.<path>.lora_A.weight``; peft's config JSON); the
umgkit method name and options ride in the safetensors metadata (see ``umgkit.adapters.checkpoint``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, ModelError
from ..registry import ADAPTERS
from ._base import Adapter, ScopeOptions, check_positive, check_targets
from ._layout import BlockLayout
from ._structure import block_targets, get_submodule, unwrapped

# peft (and the transformers it imports) takes seconds to import, so it is imported where it is used:
# listing or building adapters of other methods never pays for it.

__all__ = ["LoraAdapter", "DoraAdapter", "LoHaAdapter", "LoKrAdapter", "PeftOptions", "PEFT_PREFIX"]

PEFT_PREFIX = "base_model.model."  # key prefix peft's PeftModel uses in adapter_model.safetensors
_ADAPTER_NAME = "default"


@dataclass
class PeftOptions(ScopeOptions):
    rank: int = 8  # r of each low-rank factor
    alpha: float = 8.0  # scaling numerator (LoRA scaling = alpha / rank)
    dropout: float = 0.0  # LoRA: lora_dropout; LoHa / LoKr: module_dropout
    target_modules: tuple[str, ...] | None = None  # block-relative module paths; None = layout default

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("lora family", rank=self.rank, alpha=self.alpha)
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout={self.dropout} must be in [0, 1).")
        self.target_modules = check_targets("lora family", self.target_modules)


class _PeftAdapter(Adapter):
    """Shared machinery: resolve targets, build peft's config, inject with peft's tuner, merge with it."""

    config_cls = PeftOptions
    mergeable = True
    prefix = ""  # peft's name prefix of the method's parameters (its tuner class's ``prefix``)
    wraps_mha = False  # peft has a layer of this method for nn.MultiheadAttention

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._tuner = None
        self.peft_config = None

    def build_peft_config(self, targets: list[str]):
        raise NotImplementedError

    def default_targets(self, path: str, layout: BlockLayout) -> tuple[str, ...]:
        """Block-relative default targets: attention projections, else the MLP, else the convolutions."""
        if layout.mha and self.wraps_mha:
            return (layout.attention,)
        for targets in (layout.attention_projections, layout.mlp, layout.convs):
            if targets:
                return targets
        raise ConfigError(f"Adapter '{self.method}': block {path} has no attention projection, MLP or "
                          "convolution to adapt; name layers with target_modules=[...], or use bitfit.")

    def inject(self, model: nn.Module) -> None:
        c = self.config
        found = block_targets(model, c.tower, c.layers, c.target_modules, self.default_targets)
        for path, module, _ in found:
            _refuse_inside_mha(model, path)
            _refuse_grouped_conv(path, unwrapped(module), self.method)
        from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING

        from ._peft_mha import make_mha_exact

        self.peft_config = self.build_peft_config([path for path, _, _ in found])
        tuner_cls = PEFT_TYPE_TO_TUNER_MAPPING[self.peft_config.peft_type]
        if tuner_cls.prefix != self.prefix:
            raise RuntimeError(f"peft renamed the {self.method} parameter prefix to {tuner_cls.prefix!r}; "
                               f"update {type(self).__name__}.prefix.")
        self._tuner = tuner_cls(model, self.peft_config, adapter_name=_ADAPTER_NAME)
        make_mha_exact(model)  # peft's own MHA forward drifts the frozen weights; see _peft_mha

    def owns(self, name: str) -> bool:
        # "lora_qv_" is umgkit's own LoRA-qv marker, not peft's, although it shares peft's "lora_" prefix.
        parts = name.split(".")
        return any(p.startswith(self.prefix) and not p.startswith("lora_qv_") for p in parts)

    def merge(self, model: nn.Module) -> nn.Module:
        if self._tuner is None or self._tuner.model is not model:
            raise ValueError(f"Adapter '{self.method}' was not applied to this model; merge the model the "
                             "adapter was applied to (or the one load_adapter returned it for).")
        from ._peft_mha import merge_exact_mha

        merge_exact_mha(model)  # before peft's unload, which would add the out_proj delta twice
        merged = self._tuner.merge_and_unload()
        self._tuner = None
        return merged

    # peft-format checkpoints --------------------------------------------------------------------
    def adapter_state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        from peft import get_peft_model_state_dict

        state = get_peft_model_state_dict(model, adapter_name=_ADAPTER_NAME)
        return {PEFT_PREFIX + k: v.detach() for k, v in state.items()}

    def load_adapter_state_dict(self, model: nn.Module, state: dict[str, torch.Tensor]) -> None:
        expected = set(self.adapter_state_dict(model))
        if set(state) != expected:
            missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
            raise ModelError(f"Adapter '{self.method}' weights do not fit this model: missing "
                             f"{missing[:5]}, unexpected {unexpected[:5]}.")
        from peft import set_peft_model_state_dict

        stripped = {k[len(PEFT_PREFIX):]: v for k, v in state.items()}
        set_peft_model_state_dict(model, stripped, adapter_name=_ADAPTER_NAME)

    def config_json(self) -> dict[str, Any]:
        """peft's own adapter_config.json content (sets become sorted lists, as peft writes them)."""
        out = {}
        for key, value in self.peft_config.to_dict().items():
            out[key] = sorted(value) if isinstance(value, set) else value
        out["peft_type"] = str(getattr(self.peft_config.peft_type, "value", self.peft_config.peft_type))
        return out


def _refuse_inside_mha(model: nn.Module, path: str) -> None:
    parts = path.split(".")
    for i in range(1, len(parts)):
        if isinstance(unwrapped(get_submodule(model, ".".join(parts[:i]))), nn.MultiheadAttention):
            raise ConfigError(f"{path} lives inside an nn.MultiheadAttention, whose forward never calls it; "
                              "target the attention module itself ('attn', LoRA only) or the MLP.")


def _refuse_grouped_conv(path: str, module: nn.Module, method: str) -> None:
    """peft wraps a grouped (depthwise) convolution only for ranks divisible by its groups and cannot merge
    it; umgkit refuses it up front rather than train an adapter that never folds into the weights."""
    if isinstance(module, nn.Conv2d) and module.groups > 1:
        raise ConfigError(f"Adapter '{method}': {path} is a grouped convolution (groups={module.groups}, "
                          "e.g. ConvNeXt's depthwise conv_dw), which peft's LoRA family cannot merge. Target "
                          "the block's dense layers instead (ConvNeXt: mlp.fc1, mlp.fc2, the default).")


@ADAPTERS.register("lora")
class LoraAdapter(_PeftAdapter):
    """LoRA via peft on chosen Linear / Conv2d / MultiheadAttention layers of each block."""

    method = "lora"
    prefix = "lora_"
    use_dora = False
    wraps_mha = True

    def build_peft_config(self, targets: list[str]):
        from peft import LoraConfig

        c = self.config
        return LoraConfig(r=c.rank, lora_alpha=c.alpha, lora_dropout=c.dropout, target_modules=targets,
                          use_dora=self.use_dora)


@ADAPTERS.register("dora")
class DoraAdapter(LoraAdapter):
    """DoRA (weight-decomposed LoRA) via peft: LoraConfig(use_dora=True)."""

    method = "dora"
    use_dora = True
    wraps_mha = False


@ADAPTERS.register("loha")
class LoHaAdapter(_PeftAdapter):
    """LoHa (low-rank Hadamard product) via peft on Linear / Conv2d layers."""

    method = "loha"
    prefix = "hada_"

    def build_peft_config(self, targets: list[str]):
        from peft import LoHaConfig

        c = self.config
        return LoHaConfig(r=c.rank, alpha=c.alpha, module_dropout=c.dropout, target_modules=targets)


@ADAPTERS.register("lokr")
class LoKrAdapter(_PeftAdapter):
    """LoKr (low-rank Kronecker product) via peft on Linear / Conv2d layers."""

    method = "lokr"
    prefix = "lokr_"

    def build_peft_config(self, targets: list[str]):
        from peft import LoKrConfig

        c = self.config
        return LoKrConfig(r=c.rank, alpha=c.alpha, module_dropout=c.dropout, target_modules=targets)
