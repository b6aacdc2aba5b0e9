"""Visual Prompt Tuning (Jia et al., 2022): learnable tokens inserted into the token sequence.

Convention: prompts go right after the prefix tokens (class token, plus register tokens where the ViT has
them): ``[prefix, prompts, patches]``. Each block of the vision tower is wrapped by `PromptedBlock`:

- ``deep``: every selected block inserts its own ``num_tokens`` prompts before running and strips them after,
  which equals the paper's "replace the previous layer's prompts" formulation.
- shallow: the first block inserts one set of prompts, they travel through the stack, the last block strips
  them.

Stripping keeps the stack's output layout unchanged, so pooling and dense (patch-grid) features downstream
work as before. Supported: timm / umg ViTs (batch-first) and open_clip vision transformers in either layout
(``attn.batch_first`` true: ``(B, L, C)``; false: ``(L, B, C)``). Blocks called with an attention mask (text
towers) are refused, since a mask sized for the original sequence cannot cover the prompts.
Count: ``num_tokens * C`` (shallow) or ``len(blocks) * num_tokens * C`` (deep).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from ..registry import ADAPTERS
from ._base import Adapter, AdapterWrapper, check_positive
from ._structure import block_width, get_submodule, select_blocks, set_submodule, unwrapped

__all__ = ["VPTAdapter", "VPTConfig", "PromptedBlock"]


class PromptedBlock(AdapterWrapper):
    """Runs a block with prompts inserted (``vpt_prompt`` set) and / or stripped (``strip``) around it."""

    def __init__(self, base_layer: nn.Module, prompt: nn.Parameter | None, *, num_tokens: int,
                 num_prefix: int, batch_first: bool, strip: bool, dropout: float) -> None:
        super().__init__(base_layer)
        self.vpt_prompt = prompt  # (P, C) or None
        self.num_tokens, self.num_prefix = num_tokens, num_prefix
        self.batch_first, self.strip = batch_first, strip
        self.vpt_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        mask = kwargs.get("attn_mask", args[2] if len(args) > 2 else None)
        if mask is not None:
            raise ConfigError("VPT cannot run a block called with an attention mask (the mask does not cover "
                              "the prompt tokens); VPT supports vision towers only.")
        seq_dim = 1 if self.batch_first else 0
        if self.vpt_prompt is not None:
            x = self._insert(x, seq_dim)
        x = self.base_layer(x, *args, **kwargs)
        if self.strip:
            p, n = self.num_prefix, self.num_tokens
            x = torch.cat([x.narrow(seq_dim, 0, p), x.narrow(seq_dim, p + n, x.shape[seq_dim] - p - n)],
                          dim=seq_dim)
        return x

    def _insert(self, x: torch.Tensor, seq_dim: int) -> torch.Tensor:
        batch = x.shape[1 - seq_dim]
        prompt = self.vpt_dropout(self.vpt_prompt).to(x.dtype)  # (P, C)
        prompt = prompt.unsqueeze(0).expand(batch, -1, -1)  # (B, P, C)
        if not self.batch_first:
            prompt = prompt.transpose(0, 1)  # (P, B, C)
        p = self.num_prefix
        rest = x.shape[seq_dim] - p
        return torch.cat([x.narrow(seq_dim, 0, p), prompt, x.narrow(seq_dim, p, rest)], dim=seq_dim)


@dataclass
class VPTConfig:
    num_tokens: int = 10  # prompts per set (the paper's default for many VTAB tasks is 10-50)
    deep: bool = False  # False: shallow (one set at the input); True: a new set at every block
    dropout: float = 0.0  # dropout on the prompts (the paper uses 0.1 on some tasks)
    num_prefix_tokens: int | None = None  # tokens kept before the prompts; None = model's, else 1
    init_std: float = 0.02  # prompts start as N(0, init_std^2), truncated at 2 std

    def __post_init__(self) -> None:
        check_positive("vpt", num_tokens=self.num_tokens, init_std=self.init_std)
        if self.num_prefix_tokens is not None and self.num_prefix_tokens < 0:
            raise ConfigError("Adapter 'vpt': num_prefix_tokens must be >= 0.")


@ADAPTERS.register("vpt")
class VPTAdapter(Adapter):
    """Visual Prompt Tuning, shallow or deep, on the vision tower."""

    method = "vpt"
    config_cls = VPTConfig

    def inject(self, model: nn.Module) -> None:
        c = self.config
        blocks = select_blocks(model, "vision", None)
        lists = {bl.path for _, _, bl in blocks}
        if len(lists) != 1 or blocks[0][2].style in ("convnext", "resnet"):
            resnet = blocks[0][2].style == "resnet"
            others = "lora or bitfit" if resnet else "lora, ssf, bitfit or adaptformer"
            raise ConfigError(f"VPT inserts prompt tokens into the one token sequence of a plain ViT; this "
                              f"backbone's blocks are {sorted(lists)} (a hierarchical model: stages of "
                              f"feature maps or windows). Use {others} on it.")
        bl = blocks[0][2]
        prefix = c.num_prefix_tokens
        if prefix is None:
            prefix = _model_prefix_tokens(model, bl.path)
        last = len(blocks) - 1
        for i, (path, block, _) in enumerate(blocks):
            if "rope" in inspect.signature(unwrapped(block).forward).parameters:
                raise ConfigError(f"VPT cannot insert prompts into {path}: its attention uses rotary "
                                  "position embeddings (EVA), whose table covers the image's own tokens "
                                  "only. Use lora, lora_qv, ssf or adaptformer on this backbone.")
            width = block_width(block, bl.style)
            batch_first = bl.style != "open_clip" or bool(unwrapped(block.attn).batch_first)
            prompt = None
            if c.deep or i == 0:
                ref = next(block.parameters())
                prompt = nn.Parameter(torch.empty(c.num_tokens, width, device=ref.device, dtype=ref.dtype))
                nn.init.trunc_normal_(prompt, std=c.init_std, a=-2 * c.init_std, b=2 * c.init_std)
            wrapped = PromptedBlock(block, prompt, num_tokens=c.num_tokens, num_prefix=prefix,
                                    batch_first=batch_first, strip=c.deep or i == last, dropout=c.dropout)
            set_submodule(model, path, wrapped)

    def owns(self, name: str) -> bool:
        return name.rsplit(".", 1)[-1] == "vpt_prompt"


def _model_prefix_tokens(model: nn.Module, list_path: str) -> int:
    """``num_prefix_tokens`` of the nearest ancestor of the block list that declares it (timm), else 1."""
    parts = list_path.split(".")[:-1]
    while True:
        holder = get_submodule(model, ".".join(parts))
        value = getattr(holder, "num_prefix_tokens", None)
        if isinstance(value, int):
            return value
        if not parts:
            return 1
        parts.pop()
