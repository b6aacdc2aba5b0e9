"""A correct, drift-free forward and merge for peft's LoRA on ``nn.MultiheadAttention`` (open_clip).

peft 0.21's ``lora.MultiheadAttention`` has two problems we measured on a tiny open_clip model:

1. Its forward merges the update into the frozen ``in_proj_weight`` / ``out_proj.weight``, runs the
   attention, then subtracts it again; in floating point ``(W + d) - d != W``, so every step nudges the
   *frozen* weights (not bit-identical after one training step).
2. ``merge()`` adds the out-projection delta twice (``W_out + 2 dW_out``), in the forward and in
   ``merge_and_unload`` alike (known: huggingface/peft pull request 3774, open at the time of writing).

So after peft injects its layers we switch them to this subclass: the forward runs the attention on
``W_in + dW_in`` and ``W_out + dW_out`` through ``torch.func.functional_call`` without writing to ``W``,
and `merge_exact_mha` folds exactly those weights. Parameters, names and saved files stay peft's own, so
``peft.PeftModel.from_pretrained`` loads umgkit checkpoints; until peft fixes (2) its outputs for
attention-targeted LoRA differ from umgkit's (Linear targets are unaffected).
"""

from __future__ import annotations

from typing import Any

import torch
from peft.tuners.lora.layer import MultiheadAttention as PeftLoraMultiheadAttention
from torch import nn
from torch.func import functional_call

__all__ = ["ExactLoraMultiheadAttention", "make_mha_exact", "merge_exact_mha"]


class ExactLoraMultiheadAttention(PeftLoraMultiheadAttention):
    """peft's LoRA MultiheadAttention with a forward that leaves the frozen weights untouched."""

    def adapted_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W_in + dW_in, W_out + dW_out)`` summed over the active adapters."""
        base = self.get_base_layer()
        out_proj = base.out_proj  # peft's lora.Linear around the frozen out-projection
        w_in, w_out = base.in_proj_weight, out_proj.get_base_layer().weight
        for name in self.active_adapters:
            if name in self.lora_A:
                w_in = w_in + self.get_delta_weight(name).to(w_in.dtype)
                w_out = w_out + out_proj.get_delta_weight(name).to(w_out.dtype)
        return w_in, w_out

    def forward(self, query: torch.Tensor, *args: Any, **kwargs: Any):
        if self.disable_adapters or self.merged:
            return super().forward(query, *args, **kwargs)
        self._check_forward_args(query, *args, **kwargs)
        w_in, w_out = self.adapted_weights()
        params = {"in_proj_weight": w_in, "out_proj.base_layer.weight": w_out}
        return functional_call(self.get_base_layer(), params, (query, *args), kwargs)


def make_mha_exact(model: nn.Module) -> int:
    """Switch every peft LoRA MultiheadAttention in ``model`` to the exact forward; returns how many."""
    count = 0
    for module in model.modules():
        if type(module) is PeftLoraMultiheadAttention:
            module.__class__ = ExactLoraMultiheadAttention
            count += 1
    return count


def merge_exact_mha(model: nn.Module) -> int:
    """Fold every `ExactLoraMultiheadAttention` into its frozen attention and put the plain
    ``nn.MultiheadAttention`` (with its plain ``out_proj``) back in its place; returns how many."""
    from ._structure import set_submodule

    found = [(n, m) for n, m in model.named_modules() if isinstance(m, ExactLoraMultiheadAttention)]
    for name, module in found:
        base = module.get_base_layer()
        w_in, w_out = module.adapted_weights()
        out_linear = base.out_proj.get_base_layer()
        with torch.no_grad():
            base.in_proj_weight.data.copy_(w_in)
            out_linear.weight.data.copy_(w_out)
        base.out_proj = out_linear
        set_submodule(model, name, base)
    return len(found)
