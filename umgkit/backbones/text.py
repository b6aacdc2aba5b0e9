"""umgkit's text tower: causal transformer over open_clip's BPE tokens, pooled at the end-of-text token.

Uses the same `Block` as the image tower (``blocks[i].attn.qkv`` etc.), so adapters see one layout.
The tokenizer is open_clip's ``SimpleTokenizer`` (its BPE vocabulary ships inside the package; no
download), which puts the end-of-text token last with the highest id, so ``argmax`` over ids finds it.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn

from .vit import Block

__all__ = ["TextTransformer", "get_tokenizer"]

VOCAB_SIZE = 49408  # open_clip SimpleTokenizer


@lru_cache(maxsize=4)
def get_tokenizer(context_length: int):
    """open_clip's ``SimpleTokenizer`` for ``context_length`` (cached: building it reads the BPE file)."""
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer(context_length=context_length)


class TextTransformer(nn.Module):
    """Token ids ``(B, L)`` -> ``(B, D)`` unnormalised text embeddings (EOT token, final norm, projection)."""

    def __init__(self, *, context_length: int, vocab_size: int, width: int, layers: int, heads: int,
                 mlp_dim: int, embed_dim: int, act: str = "gelu") -> None:
        super().__init__()
        self.context_length = context_length
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.zeros(context_length, width))
        self.blocks = nn.ModuleList([Block(width, heads, mlp_dim, act) for _ in range(layers)])
        self.norm = nn.LayerNorm(width)
        self.proj = nn.Linear(width, embed_dim, bias=False)
        causal = torch.full((context_length, context_length), float("-inf")).triu_(1)
        self.register_buffer("attn_mask", causal, persistent=False)  # additive, (L, L)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self._features(ids)
        eot = x[torch.arange(x.shape[0], device=x.device), ids.argmax(dim=-1)]  # (B, W)
        return self.proj(eot)

    def forward_tokens(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token and pooled outputs for fine-grained losses (SPARC): ``(B, L, D)`` projected token
        features (unnormalised; token ``t`` sees tokens ``<= t``, the mask is causal) and the ``(B, D)``
        pooled embedding that `forward` returns."""
        x = self.proj(self._features(ids))  # (B, L, D)
        return x, x[torch.arange(x.shape[0], device=x.device), ids.argmax(dim=-1)]

    def _features(self, ids: torch.Tensor) -> torch.Tensor:
        """Normed last-block features ``(B, L, W)``."""
        n = ids.shape[1]
        x = self.token_embedding(ids) + self.positional_embedding[:n]  # (B, L, W)
        mask = self.attn_mask[:n, :n].to(x.dtype)
        for block in self.blocks:
            x = block(x, attn_mask=mask)
        return self.norm(x)

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return get_tokenizer(self.context_length)(texts)
