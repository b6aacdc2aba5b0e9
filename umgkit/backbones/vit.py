"""umgkit's own ViT image tower, with timm's block layout so one adapter targets both.

Block layout (same attribute names as timm's ``VisionTransformer``)::

    blocks[i].norm1, .attn.qkv (fused Linear(C, 3C)), .attn.proj, .norm2, .mlp.fc1, .mlp.fc2

Pre-norm residual blocks, GELU MLP (or QuickGELU, as OpenAI's CLIP weights need), and
``F.scaled_dot_product_attention``. The same `Block` runs the text tower, which passes a causal
``attn_mask``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._pos_embed import resample_pos_embed

__all__ = ["ACTIVATIONS", "Attention", "Mlp", "Block", "ConvStem", "QuickGELU", "VisionTransformer",
           "init_weights", "POOLS", "STEMS"]

STEMS = ("patch", "conv")
POOLS = ("cls", "mean")
ACTIVATIONS = ("gelu", "quick_gelu")


class QuickGELU(nn.Module):
    """``x * sigmoid(1.702 x)``: the GELU approximation OpenAI's CLIP models were trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class Attention(nn.Module):
    """Multi-head self-attention on batch-first tokens ``(B, N, C)`` with a fused qkv projection."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}.")
        self.num_heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=attn_mask)  # (B, h, N, d)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, width: int, hidden: int, act: str = "gelu") -> None:
        super().__init__()
        if act not in ACTIVATIONS:
            raise ValueError(f"activation {act!r}; choose one of {ACTIVATIONS}.")
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.GELU() if act == "gelu" else QuickGELU()
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``."""

    def __init__(self, width: int, heads: int, mlp_dim: int, act: str = "gelu") -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = Mlp(width, mlp_dim, act)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), attn_mask=attn_mask)
        return x + self.mlp(self.norm2(x))


class ConvStem(nn.Sequential):
    """A small VGG-style CNN in place of the patchify conv (``stem: conv``), for towers trained from scratch.

    ``log2(patch_size)`` stages of 3x3 conv (stride 1) + BatchNorm + ReLU + 2x2 max-pool, channels
    doubling up to ``width``, then a 3x3 conv + BatchNorm + ReLU at the token grid. Each token then holds
    its patch's local shape, seen at full resolution through several nonlinear layers, before attention
    has learned anything: with one patchify conv (or strided convs, as in Xiao et al., 2021, "Early
    convolutions help transformers see better") a 64 px tiny tower learnt the synthetic world's shapes
    several times more slowly. Convs are He-initialised (`init_weights`), as CNNs are.
    """

    def __init__(self, width: int, patch_size: int) -> None:
        steps = int(math.log2(patch_size))
        if 2 ** steps != patch_size or steps < 1:
            raise ValueError(f"stem 'conv' needs a power-of-two patch_size, got {patch_size}; use stem "
                             "'patch'.")
        layers: list[nn.Module] = []
        channels = 3
        for k in range(steps):
            out = max(width // 2 ** (steps - 1 - k), 16)
            layers += [*_conv_bn_relu(channels, out), nn.MaxPool2d(2)]
            channels = out
        super().__init__(*layers, *_conv_bn_relu(channels, width))


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class VisionTransformer(nn.Module):
    """Image tower: patch embedding (one patchify conv, or `ConvStem`), class token, learned position
    embeddings, an optional LayerNorm before the blocks (``pre_norm``: open_clip's ``ln_pre``, timm's
    ``norm_pre``, so their weights load exactly), blocks, final norm, projection.

    ``pool`` says which token(s) give the image embedding: ``cls`` (CLIP) or ``mean`` of the patch tokens
    (timm's ``global_pool='avg'``; learns faster from scratch on small data, and it is the average of the
    very features that region and pixel embeddings are made of).

    ``embed(images)`` returns the tokens entering the first block ``(B, 1 + h*w, C)`` with position
    embeddings resampled (bicubic) when the grid differs from ``image_size // patch_size``; ``proj`` maps
    normed features ``(..., C)`` to the joint space ``(..., D)``.
    """

    num_prefix_tokens = 1

    def __init__(self, *, image_size: int, patch_size: int, width: int, layers: int, heads: int,
                 mlp_dim: int, embed_dim: int, stem: str = "patch", pre_norm: bool = False,
                 act: str = "gelu", pool: str = "cls") -> None:
        super().__init__()
        self.patch_size = patch_size
        self.grid_size = (image_size // patch_size, image_size // patch_size)
        if stem not in STEMS:
            raise ValueError(f"vision stem {stem!r}; choose one of {STEMS}.")
        if pool not in POOLS:
            raise ValueError(f"vision pool {pool!r}; choose one of {POOLS}.")
        self.pool = pool
        self.patch_embed = (nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size) if stem == "patch"
                            else ConvStem(width, patch_size))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid_size[0] * self.grid_size[1], width))
        if pre_norm:  # only then a module, so checkpoints without it keep their keys
            self.norm_pre = nn.LayerNorm(width)
        self.blocks = nn.ModuleList([Block(width, heads, mlp_dim, act) for _ in range(layers)])
        self.norm = nn.LayerNorm(width)
        self.proj = nn.Linear(width, embed_dim, bias=False)

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        x = self.patch_embed(images)  # (B, C, h, w)
        grid = (x.shape[2], x.shape[3])
        x = x.flatten(2).transpose(1, 2)  # (B, h*w, C)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
        pos = resample_pos_embed(self.pos_embed, self.grid_size, grid, self.num_prefix_tokens)
        x = x + pos.to(x.dtype)
        if hasattr(self, "norm_pre"):
            x = self.norm_pre(x)
        return x, grid

    def pool_tokens(self, cls: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        """Pre-norm image vector ``(B, C)`` from the class token ``(B, C)`` and patch tokens ``(B, N, C)``."""
        return cls if self.pool == "cls" else patches.mean(dim=1)


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """Truncated-normal linear / embedding weights, zero biases, unit norms (ViT / CLIP practice); He
    initialisation inside a `ConvStem` (its convs feed BatchNorm and ReLU, as in a CNN)."""
    stem_convs = {id(c) for stem in module.modules() if isinstance(stem, ConvStem)
                  for c in stem.modules() if isinstance(c, nn.Conv2d)}
    for m in module.modules():
        if id(m) in stem_convs:
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.trunc_normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=std)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for name, p in module.named_parameters(recurse=True):
        if name.endswith(("pos_embed", "cls_token", "positional_embedding")):
            nn.init.normal_(p, std=std)
