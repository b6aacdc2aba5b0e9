"""The backbone contract (DESIGN.md) as one base class; subclasses supply a handful of hooks.

Conventions for every backbone:

- images are ``(B, 3, H, W)`` float tensors, already normalised with ``image_mean`` / ``image_std``; any
  ``H, W`` works (position embeddings are resampled); the patch grid is ``h, w = H // p, W // p``.
- tokens are batch-first ``(B, P + h*w, C)`` with ``P = num_prefix_tokens`` prefix tokens (class token,
  plus register tokens on some timm models) followed by the patch grid in row-major order.
- boxes are absolute XYXY pixels in the input image.
- every joint-space output (``encode_image``, ``encode_text``, ``embed_regions``, ``embed_pixels``) is
  L2-normalised along ``D = embed_dim``.

A subclass implements ``_embed`` (images -> tokens before the first block, plus the grid),
``final_norm``, ``_pool_image`` and, where it has a joint space, ``_project`` and ``_encode_text``. The
shared methods below then run the blocks (optionally with gradient checkpointing) and reshape / pool /
project, so every family gets the same semantics from the same code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from torchvision.ops import roi_align

from ..errors import ConfigError
from .prompt_tokens import (
    PlaceholderSlot,
    context_inserted,
    find_placeholder_slot,
    prompt_texts,
    word_token_ids,
)
from .pyramid import SimpleFeaturePyramid, parameter_free_pyramid

DENSE_PATHS = ("project", "value")

__all__ = ["Backbone", "DENSE_PATHS", "ShapeSpec", "NoTextTowerError", "NoJointSpaceError", "l2_normalize",
           "roi_pool_mean"]


@dataclass(frozen=True)
class ShapeSpec:
    """Channels and stride (input pixels per output pixel) of one feature map."""

    channels: int
    stride: int


class NoTextTowerError(RuntimeError):
    """A text method was called on a vision-only backbone."""


class NoJointSpaceError(RuntimeError):
    """A joint image-text space method was called on a vision-only backbone."""


def l2_normalize(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return F.normalize(x, dim=dim)


def roi_pool_mean(fmap: torch.Tensor, boxes: Sequence[torch.Tensor], stride: int) -> torch.Tensor:
    """``(sum K_i, C)``: RoIAlign with one output bin and about one sample per cell (see
    `Backbone.embed_regions`). Boxes are divided by ``stride`` here rather than through ``spatial_scale``:
    ``1/14`` is inexact in float and would move the samples of a patch-14 grid off the cell centres."""
    boxes = [b.to(device=fmap.device, dtype=fmap.dtype).reshape(-1, 4) / stride for b in boxes]
    if not boxes:  # no image (a process whose batch was skipped): no region, still in the graph
        return fmap.new_zeros(0, fmap.shape[1]) + 0.0 * fmap.sum()
    return roi_align(fmap, boxes, output_size=1, spatial_scale=1.0, sampling_ratio=-1,
                     aligned=True).flatten(1)


class Backbone(nn.Module):
    """A frozen ViT backbone with declared output shapes and the multi-granularity contract.

    Declared shapes: ``embed_dim`` (D of the joint space, None when vision-only), ``width`` (C of patch
    tokens), ``patch_size`` (stride of ``dense``), ``num_layers`` (vision blocks), ``has_text``.

    Frozen by default: parameters have ``requires_grad=False`` and ``train()`` keeps every module that was
    part of the backbone when it was built in eval mode (norm statistics, dropout), while modules added
    later (adapters) follow the requested mode. ``set_trainable(True)`` opts into full fine-tuning.
    """

    num_prefix_tokens: int = 1
    dense_path: str = "project"  # how embed_pixels / embed_regions read the last block; see set_dense_path

    def __init__(self, *, name: str, embed_dim: int | None, width: int, patch_size: int, num_layers: int,
                 has_text: bool, image_size: tuple[int, int], image_mean: Sequence[float],
                 image_std: Sequence[float]) -> None:
        super().__init__()
        self.name = name
        self.embed_dim, self.width, self.patch_size = embed_dim, int(width), int(patch_size)
        self.num_layers, self.has_text = int(num_layers), bool(has_text)
        self.image_size = tuple(int(s) for s in image_size)  # native (H, W) of the position embeddings
        self.image_mean, self.image_std = tuple(image_mean), tuple(image_std)
        self.grad_checkpointing = False
        self._trainable = False
        self._trunk_ids: set[int] = set()

    # ----------------------------------------------------------------------------------------- hooks
    @property
    def blocks(self) -> nn.Module:
        """The vision tower's block list (an ``nn.ModuleList`` / ``nn.Sequential``), for adapters."""
        raise NotImplementedError

    def _embed(self, images: torch.Tensor) -> tuple:
        """Tokens entering the first block ``(B, P + h*w, C)`` and the grid ``(h, w)``; optionally a third
        item, passed to every `_run_block` of this forward (e.g. EVA's rotary position embedding)."""
        raise NotImplementedError

    def _run_block(self, block: nn.Module, x: torch.Tensor, extra: object = None) -> torch.Tensor:
        return block(x)

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        """The vision tower's last norm, applied to tokens ``(..., C)``."""
        raise NotImplementedError

    def _pool_image(self, tokens: torch.Tensor) -> torch.Tensor:
        """Image embedding before L2 normalisation from last-block tokens ``(B, P + N, C)``."""
        raise NotImplementedError

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        """Normed features ``(..., C)`` -> joint space ``(..., D)``."""
        raise NoJointSpaceError(self._no_joint_message())

    def _encode_text(self, texts: list[str]) -> torch.Tensor:
        raise NoTextTowerError(
            f"{self.name} has no text tower; pick a backbone with one, e.g. openclip:ViT-B-16 or umg:tiny.")

    # ------------------------------------------------------------------------------ freezing / modes
    def _freeze(self) -> None:
        """Call at the end of a subclass ``__init__``: freeze and remember which modules are the trunk."""
        self.requires_grad_(False)
        self._trunk_ids = {id(m) for m in self.modules() if m is not self}
        self.eval()

    def set_trainable(self, enabled: bool = True) -> Backbone:
        """Full fine-tuning switch: unfreezes every parameter and lets ``train()`` reach the trunk."""
        self._trainable = bool(enabled)
        self.requires_grad_(self._trainable)
        return self.train(self.training)

    def train(self, mode: bool = True) -> Backbone:
        super().train(mode)
        if mode and not self._trainable:
            for module in self.modules():
                if id(module) in self._trunk_ids:
                    module.training = False
        return self

    def set_dense_path(self, path: str) -> Backbone:
        """How `embed_pixels` and `embed_regions` read a token ViT (``model.dense`` in a run config).

        ``"project"`` (default): last-block tokens through the final norm and projection. ``"value"``: the
        last block runs with each token attending only to itself, so its attention output is the token's
        value path (MaskCLIP): what off-the-shelf CLIP weights localise best with. The pooled image
        feature is unchanged either way.
        """
        if path not in DENSE_PATHS:
            raise ConfigError(f"dense path {path!r}: choose one of {', '.join(DENSE_PATHS)}.",
                              key="model.dense")
        self.dense_path = path
        return self

    def set_grad_checkpointing(self, enabled: bool = True) -> Backbone:
        """Recompute each vision block in backward (non-reentrant), for adapters training in the trunk."""
        self.grad_checkpointing = bool(enabled)
        return self

    # ----------------------------------------------------------------------------------- the trunk
    def _forward(self, images: torch.Tensor, take: Sequence[int] = (), stop_early: bool = False
                 ) -> tuple[torch.Tensor, tuple[int, int], dict[int, torch.Tensor]]:
        """Last-block tokens, grid and the outputs of blocks ``take`` (non-negative indices)."""
        x, grid, *rest = self._embed(images)
        extra = rest[0] if rest else None
        feats: dict[int, torch.Tensor] = {}
        last = max(take) if (take and stop_early) else len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            if i > last:
                break
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(self._run_block, block, x, extra, use_reentrant=False)
            else:
                x = self._run_block(block, x, extra)
            if i in take:
                feats[i] = x
        return x, grid, feats

    def forward_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """Last-block tokens ``(B, P + h*w, C)`` before the final norm."""
        return self._forward(images)[0]

    def _to_grid(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        patches = tokens[:, self.num_prefix_tokens:]  # (B, h*w, C)
        b, n, c = patches.shape
        if n != grid[0] * grid[1]:
            raise RuntimeError(f"{self.name}: {n} patch tokens do not fill the {grid[0]}x{grid[1]} grid "
                               f"(tokens added by an adapter must be stripped before the last block).")
        return patches.transpose(1, 2).reshape(b, c, grid[0], grid[1])

    def _layer_indices(self, layers: Sequence[int]) -> list[int]:
        n = len(self.blocks)
        out = []
        for i in layers:
            j = i + n if i < 0 else i
            if not 0 <= j < n:
                raise IndexError(f"{self.name}: layer {i} out of range; it has {n} blocks "
                                 f"(valid: 0..{n - 1} or -{n}..-1).")
            out.append(j)
        return out

    # -------------------------------------------------------------------------------- the contract
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Same as `dense`: ``(B, C, h, w)``."""
        return self.dense(images)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` L2-normalised image embeddings (joint image-text space where the backbone has one)."""
        return l2_normalize(self._pool_image(self._forward(images)[0]))

    def encode_text(self, texts: str | Sequence[str]) -> torch.Tensor:
        """``(B, D)`` L2-normalised text embeddings; the tokenizer is part of the backbone."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        return l2_normalize(self._encode_text(texts))

    # ------------------------------------------------------------- learned prompt tokens (CoOp family)
    @property
    def text_token_embedding(self) -> nn.Module:
        """The text tower's token-embedding lookup (``(N, L) ids -> (N, L, W)``), where prompt methods
        put their learned tokens (`encode_text_with_context`)."""
        raise NoTextTowerError(f"{self.name} has no text tower, so no prompt tokens to learn; pick a "
                               "backbone with one, e.g. openclip:ViT-B-16 or umg:tiny.")

    def _placeholder_slot(self) -> PlaceholderSlot:
        if getattr(self, "_slot", None) is None:
            self._slot = find_placeholder_slot(self.tokenize)
        return self._slot

    def text_word_embeddings(self, words: str) -> torch.Tensor:
        """``(M, W)`` token embeddings of ``words`` (CoOp's context initialised from e.g. "a photo of a")."""
        ids = word_token_ids(self.tokenize, self._placeholder_slot(), words)
        table = self.text_token_embedding.weight
        return table[torch.tensor(ids, device=table.device)].detach().clone()

    def encode_text_with_context(self, texts: Sequence[str], context: torch.Tensor) -> torch.Tensor:
        """``(N, D)`` L2-normalised embeddings of ``context`` tokens followed by each text.

        ``context``: ``(M, W)`` shared, or ``(N, M, W)`` one per text, in the width ``W`` of
        `text_token_embedding`. The tower runs through its own layers, so gradients reach ``context``.
        """
        texts = list(texts)
        with context_inserted(self.text_token_embedding, context, self._placeholder_slot()):
            return l2_normalize(self._encode_text(prompt_texts(texts, context.shape[-2])))

    def dense(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, C, h, w)`` last-layer patch features after the final norm (stride ``patch_size``)."""
        tokens, grid, _ = self._forward(images)
        return self._to_grid(self.final_norm(tokens), grid)

    def intermediate(self, images: torch.Tensor, layers: Sequence[int]) -> list[torch.Tensor]:
        """Raw outputs of vision blocks ``layers`` (negative counts from the end) as ``(B, C, h, w)``.

        No final norm is applied (as timm's ``forward_intermediates`` default), so
        ``intermediate(x, [-1])[0]`` is `dense` before the norm.
        """
        idx = self._layer_indices(layers)
        _, grid, feats = self._forward(images, take=idx, stop_early=True)
        return [self._to_grid(feats[i], grid) for i in idx]

    def project(self, tokens: torch.Tensor) -> torch.Tensor:
        """Last-block tokens ``(..., C)`` -> joint-space features ``(..., D)`` (final norm + image
        projection, not normalised): the map behind `encode_image`, `embed_regions` and `embed_pixels`,
        for pretraining losses on patch or pooled tokens."""
        return self._project(self.final_norm(tokens))

    def _dense_tokens(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Last-block tokens for the dense embeddings, as `set_dense_path` chose, and the grid."""
        if self.dense_path == "project":
            tokens, grid, _ = self._forward(images)
            return tokens, grid
        x, grid, *rest = self._embed(images)
        extra = rest[0] if rest else None
        blocks = list(self.blocks)
        for block in blocks[:-1]:
            x = self._run_block(block, x, extra)
        n = x.shape[1]
        self_only = torch.full((n, n), float("-inf"), device=x.device, dtype=x.dtype).fill_diagonal_(0.0)
        return self._run_block_masked(blocks[-1], x, extra, self_only), grid

    def _run_block_masked(self, block: nn.Module, x: torch.Tensor, extra: object,
                          mask: torch.Tensor) -> torch.Tensor:
        """``block`` with an additive ``(L, L)`` attention mask (the value dense path)."""
        return block(x, attn_mask=mask)

    def embed_pixels(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, D, h, w)`` text-aligned patch embeddings, L2-normalised along D.

        Choice: each last-block patch token goes through the final norm and the image projection, the
        same path as the pooled image feature (and exactly `embed_regions` of a one-patch box). This is
        the path umgkit's pixel-level pretraining aligns with text, so for ``umg:`` checkpoints it is the
        trained one; it also needs no change to the last block, so adapters inside it apply unchanged.
        For off-the-shelf CLIP weights the value-value ("no query-key", MaskCLIP-style) last layer
        localises better; it is not implemented here.
        """
        tokens, grid = self._dense_tokens(images)
        pix = self.project(tokens[:, self.num_prefix_tokens:])  # (B, h*w, D)
        pix = l2_normalize(pix)
        return pix.transpose(1, 2).reshape(pix.shape[0], pix.shape[2], grid[0], grid[1])

    def embed_regions(self, images: torch.Tensor, boxes: Sequence[torch.Tensor]) -> torch.Tensor:
        """``(sum K_i, D)`` L2-normalised region embeddings for per-image boxes ``(K_i, 4)`` XYXY pixels.

        RoIAlign on the last-block patch grid (``aligned=True``, ``spatial_scale=1/patch_size``) with one
        output bin and adaptive sampling (``ceil`` of the box size in patches per axis), i.e. the mean of
        the bilinearly interpolated token field sampled about once per patch; then the final norm and
        the image projection, as for the pooled image feature. For a box covering the whole image the
        samples fall exactly on patch centres, so the result is the mean patch token normed and projected
        (asserted in the tests). Memory is ``K x C`` whatever the box size.
        """
        if len(boxes) != images.shape[0]:
            raise ValueError(f"embed_regions: got {len(boxes)} box tensors for {images.shape[0]} images; "
                             "pass one (K_i, 4) XYXY tensor per image (K_i may be 0).")
        tokens, grid = self._dense_tokens(images)
        fmap = self._to_grid(tokens, grid)  # (B, C, h, w), before the final norm
        pooled = roi_pool_mean(fmap, boxes, self.patch_size)  # (K, C)
        return l2_normalize(self.project(pooled))

    # ------------------------------------------------------------------------------------- pyramid
    def neck_input(self, images: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        """What a dense head's neck (`make_neck`) reads: `dense` for a ViT; hierarchical backbones give
        their stages ``{"p2": ..., "p5": ...}``."""
        return self.dense(images)

    def make_neck(self, out_channels: int = 256) -> nn.Module:
        """A trainable neck from `neck_input` to ``{"p2".."p5": (B, out_channels, H/s, W/s)}``, owned by a
        head: ViTDet's simple feature pyramid for a ViT."""
        return SimpleFeaturePyramid.from_backbone(self, out_channels=out_channels)

    def pyramid_shapes(self, channels: int | None = None) -> dict[str, ShapeSpec]:
        """What `pyramid` returns: keys ``p2..p5`` (stride 4, 8, 16, 32) -> channels and stride."""
        c = self.width if channels is None else int(channels)
        return {k: ShapeSpec(c, s) for k, s in SimpleFeaturePyramid.STRIDES.items()}

    def pyramid(self, images: torch.Tensor, channels: int | None = None,
                neck: SimpleFeaturePyramid | None = None) -> dict[str, torch.Tensor]:
        """Multi-scale features ``{"p2": (B, ch, H/4, W/4), ..., "p5": (B, ch, H/32, W/32)}``.

        With ``neck`` (a trainable `SimpleFeaturePyramid` owned by the head) it is applied to `dense`;
        without one, a parameter-free pyramid (bilinear up, max-pool down) of `dense` is returned and
        ``channels`` must be None or ``width``. Build a neck with ``SimpleFeaturePyramid.from_backbone``.
        """
        fmap = self.dense(images)
        if neck is not None:
            if channels is not None and channels != neck.out_channels:
                raise ValueError(f"pyramid: channels={channels} but the neck makes {neck.out_channels}.")
            return neck(fmap)
        if channels not in (None, self.width):
            raise ValueError(f"pyramid: channels={channels} needs learned layers; build "
                             f"SimpleFeaturePyramid.from_backbone(backbone, out_channels={channels}) in "
                             "your head and pass it as neck=.")
        return parameter_free_pyramid(fmap, self.patch_size)

    # -------------------------------------------------------------------------------------- errors
    def _no_joint_message(self) -> str:
        return (f"{self.name} has no joint image-text space (vision-only backbone); region / pixel "
                "embeddings need one: pick e.g. openclip:ViT-B-16 or umg:tiny, or use dense() features.")

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, embed_dim={self.embed_dim}, width={self.width}, "
                f"patch_size={self.patch_size}, num_layers={self.num_layers}, has_text={self.has_text}")
