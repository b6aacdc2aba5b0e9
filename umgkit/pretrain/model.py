"""The pretraining forward: a dual encoder (umg, or an open_clip CLIP with a token image tower such as
EVA02-CLIP), unfrozen, with token reduction inside the image tower.

Where the reduction happens: the first ``reduce_after`` vision blocks run on every patch token, so the
clustering sees contextual features rather than raw patch embeddings; then the patch tokens are reduced
to ``keep_count(N, keep_ratio)`` (the class token always stays) and the remaining blocks run on the short
sequence. Cost is roughly ``reduce_after / L + (1 - reduce_after / L) * keep_ratio`` of the full tower.

How dense features come back: the last-block reduced tokens are scattered to the full ``h x w`` grid —
``unmerge`` gives every position its cluster's token (cluster mode), and in random-masking mode every
dropped position takes the token of its nearest kept position (grid distance). Region embeddings
(RoIAlign on that grid, exactly as `Backbone.embed_regions`) and pixel embeddings (as
`Backbone.embed_pixels`) are then computed on a full grid, so every image area has a feature.
Without reduction (``reduction="none"``, and always in eval mode) the outputs equal the backbone's
own ``encode_image`` / ``embed_regions`` / ``embed_pixels``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..backbones.base import Backbone, roi_pool_mean
from ..backbones.openclip import OpenCLIPBackbone
from ..backbones.openclip_towers import OpenCLIPTimmViT
from ..backbones.umg import UMGBackbone
from ..errors import ConfigError
from . import token_reduction as tr
from .text_tower import text_tower

__all__ = ["PretrainModel", "REDUCTIONS", "text_token_mask"]

REDUCTIONS = ("cluster", "random", "none")
PRETRAINABLE = (UMGBackbone, OpenCLIPBackbone, OpenCLIPTimmViT)  # dual encoders with a token image tower


def text_token_mask(ids: torch.Tensor, sot: int, eot: int) -> torch.Tensor:
    """``(B, L)`` bool: True for word tokens (not start/end-of-text, not padding id 0)."""
    return (ids != 0) & (ids != sot) & (ids != eot)


class PretrainModel(nn.Module):
    """A trainable dual encoder (`PRETRAINABLE`) plus the extra log inverse temperatures of the finer losses.

    Towers with rotary position embeddings (EVA02) keep one grid position per reduced token: a kept
    patch its own, a merged cluster the member nearest to the cluster's mean position.

    ``forward(images, texts, boxes=None, want_tokens=False)`` returns a dict:

    - ``image`` (B, D), ``text`` (M, D): L2-normalised pooled embeddings (``texts`` has M strings);
    - ``patch`` (B, M', D): L2-normalised joint-space patch tokens as the last block saw them (M' kept /
      merged tokens under reduction, else h*w), for SPARC;
    - ``pixel`` (B, D, h, w): L2-normalised pixel embeddings on the full grid;
    - ``region`` (K, D): L2-normalised embeddings of ``boxes`` (list of (K_i, 4) XYXY pixels), if given;
    - ``text_tokens`` (M, L, D) L2-normalised and ``text_mask`` (M, L) bool, if ``want_tokens``;
    - ``logit_scale`` (the backbone's, image-text) and ``scales`` {region, tag, sparc, pixel}.
    """

    def __init__(self, backbone: Backbone, *, reduction: str = "cluster", keep_ratio: float = 0.25,
                 reduce_after: int = 1, cluster_iters: int | None = None) -> None:
        super().__init__()
        if not isinstance(backbone, PRETRAINABLE):
            raise ConfigError(f"pretraining needs a dual encoder with a token image tower, got "
                              f"{getattr(backbone, 'name', type(backbone).__name__)}; use umg:<arch or "
                              "checkpoint>, or an open_clip CLIP such as openclip:EVA02-B-16 or "
                              "openclip:ViT-B-16.", key="model.backbone")
        if reduction not in REDUCTIONS:
            raise ConfigError(f"task_options.reduction={reduction!r}; choose one of {REDUCTIONS}.")
        if not 0.0 < keep_ratio <= 1.0:
            raise ConfigError(f"task_options.keep_ratio={keep_ratio}; give a fraction in (0, 1].")
        if not 0 <= reduce_after < len(backbone.blocks):
            raise ConfigError(f"task_options.reduce_after={reduce_after}; the image tower has "
                             f"{len(backbone.blocks)} blocks, give 0..{len(backbone.blocks) - 1}.")
        self.text = text_tower(backbone)
        self.backbone = backbone.set_trainable(True)
        self.reduction, self.keep_ratio = reduction, float(keep_ratio)
        self.reduce_after, self.cluster_iters = int(reduce_after), cluster_iters
        init = math.log(1 / 0.07)
        self.scales = nn.ParameterDict({k: nn.Parameter(torch.tensor(init))
                                        for k in ("region", "tag", "sparc", "pixel")})
        tok = backbone.tokenize(["x"])[0]
        self.sot, self.eot = int(tok[0]), int(tok.max())

    def no_weight_decay(self) -> list[str]:
        """Position / class / token embeddings and temperatures are not decayed (optimizer convention)."""
        return [n for n, _ in self.named_parameters()
                if n.endswith(("pos_embed", "cls_token", "positional_embedding", "token_embedding.weight",
                               "logit_scale")) or n.startswith("scales.")]

    # ---------------------------------------------------------------------------------- image tower
    def _reduce(self, x: torch.Tensor, grid: tuple[int, int]
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Patch tokens ``(B, N, C)`` -> reduced ``(B, M, C)``, ``assign`` ``(B, N)`` into [0, M) and each
        reduced token's grid position ``(B, M)`` (a kept patch's own; a cluster's member closest to its
        mean position), for towers with rotary position embeddings."""
        keep = tr.keep_count(x.shape[1], self.keep_ratio)
        h, w = grid
        ys, xs = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device),
                                indexing="ij")
        coords = torch.stack([ys.flatten(), xs.flatten()], dim=1).float()  # (N, 2)
        if self.reduction == "cluster":
            kwargs = {} if self.cluster_iters is None else {"iters": self.cluster_iters}
            merged, assign = tr.cluster_merge(x, keep, **kwargs)
            members = F.one_hot(assign, merged.shape[1]).to(coords.dtype)  # (B, N, M)
            centre = members.transpose(1, 2) @ coords / members.sum(1).clamp_min(1)[..., None]  # (B, M, 2)
            return merged, assign, torch.cdist(centre, coords[None].expand(x.shape[0], -1, -1)).argmin(-1)
        kept, index = tr.random_keep(x, keep)  # index (B, M) sorted positions
        dist = torch.cdist(coords[None].expand(x.shape[0], -1, -1), coords[index])  # (B, N, M)
        return kept, dist.argmin(dim=2), index

    def _run(self, block: nn.Module, x: torch.Tensor, extra: object) -> torch.Tensor:
        run = self.backbone._run_block
        if self.backbone.grad_checkpointing and torch.is_grad_enabled():
            return checkpoint(run, block, x, extra, use_reentrant=False)
        return run(block, x, extra)

    def image_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                            tuple[int, int]]:
        """``(prefix (B, P, C), tokens (B, M, C), grid tokens (B, C, h, w), grid)``, before the final norm."""
        bb = self.backbone
        x, grid, *rest = bb._embed(images)  # (B, P + N, C); EVA also gives its rotary table (N, 2d)
        rope = rest[0] if rest else None
        p = bb.num_prefix_tokens
        assign = None
        for i, block in enumerate(bb.blocks):
            if i == self.reduce_after and self.reduction != "none" and self.training:
                reduced, assign, positions = self._reduce(x[:, p:], grid)
                x = torch.cat([x[:, :p], reduced], dim=1)
                if rope is not None:  # each kept / merged token keeps one grid position's rotation
                    rope = rope[positions].unsqueeze(1)  # (B, 1, M, 2d): broadcast over heads
            x = self._run(block, x, rope)
        prefix, tokens = x[:, :p], x[:, p:]
        full = tokens if assign is None else tr.unmerge(tokens, assign)  # (B, N, C)
        fmap = full.transpose(1, 2).reshape(full.shape[0], full.shape[2], grid[0], grid[1])
        return prefix, tokens, fmap, grid

    def region_embeddings(self, fmap: torch.Tensor, boxes: Sequence[torch.Tensor]) -> torch.Tensor:
        """``(K, D)`` as `Backbone.embed_regions`, from a pre-norm grid ``(B, C, h, w)``."""
        pooled = roi_pool_mean(fmap, boxes, self.backbone.patch_size)  # (K, C)
        return F.normalize(self.backbone.project(pooled), dim=-1)

    # ----------------------------------------------------------------------------------- text tower
    def text_ids(self, texts: list[str], device: torch.device) -> torch.Tensor:
        """Token ids cut after the last end-of-text token of the batch: with the causal mask every
        kept position computes exactly what it would in the full context, and short captions cost
        ``O(longest caption)`` instead of ``O(context_length)``."""
        ids = self.backbone.tokenize(texts).to(device)  # (M, L)
        length = int(ids.argmax(dim=-1).max()) + 1 if ids.numel() else 1
        return ids[:, :length]

    def encode_texts(self, ids: torch.Tensor, want_tokens: bool = False) -> tuple[torch.Tensor,
                                                                                  torch.Tensor | None]:
        """Pooled ``(M, D)`` (and, with ``want_tokens``, per-token ``(M, L, D)``, zero past each bucket's
        length) text features of ``ids`` ``(M, L)``, run in two length buckets.

        Region captions ("a red circle") are a few tokens long, image captions many: padding both to the
        longest would spend most of the text tower on padding. Each bucket is cut after its own longest
        caption, which under the causal mask computes exactly what the full context would.
        """
        text = self.text
        lengths = ids.argmax(dim=-1) + 1  # end-of-text has the highest id
        longest = int(lengths.max()) if ids.numel() else 1
        short = lengths <= (longest + 1) // 2
        if not bool(short.any()) or bool(short.all()):  # one bucket
            if not want_tokens:
                return text.pooled(ids), None
            tokens, pooled = text.tokens(ids)
            return pooled, tokens
        pooled, tokens = None, None
        for rows in (short.nonzero(as_tuple=True)[0], (~short).nonzero(as_tuple=True)[0]):
            part = ids[rows, : int(lengths[rows].max())]
            if want_tokens:
                tok, pool = text.tokens(part)
                if tokens is None:
                    tokens = tok.new_zeros((ids.shape[0], ids.shape[1], tok.shape[2]))
                tokens = tokens.index_put((rows,), F.pad(tok, (0, 0, 0, ids.shape[1] - tok.shape[1])))
            else:
                pool = text.pooled(part)
            if pooled is None:
                pooled = pool.new_zeros((ids.shape[0], text.embed_dim))
            pooled = pooled.index_put((rows,), pool.to(pooled.dtype))
        return pooled, tokens

    # -------------------------------------------------------------------------------------- forward
    def forward(self, images: torch.Tensor, texts: list[str], boxes: Sequence[torch.Tensor] | None = None,
                want_tokens: bool = False) -> dict:
        bb = self.backbone
        prefix, tokens, fmap, grid = self.image_features(images)
        scale = bb.logit_scale if isinstance(bb, UMGBackbone) else bb.model.logit_scale
        out: dict = {"logit_scale": scale, "scales": dict(self.scales.items()), "grid": grid}
        full = torch.cat([prefix, fmap.flatten(2).transpose(1, 2)], dim=1)  # reduced: every patch as merged
        out["image"] = F.normalize(bb._pool_image(full), dim=-1)  # the backbone's own pooling and projection
        out["patch"] = F.normalize(bb.project(tokens), dim=-1)  # (B, M, D)
        pix = F.normalize(bb.project(fmap.flatten(2).transpose(1, 2)), dim=-1)  # (B, N, D)
        out["pixel"] = pix.transpose(1, 2).reshape(pix.shape[0], pix.shape[2], grid[0], grid[1])
        if boxes is not None:
            out["region"] = self.region_embeddings(fmap, boxes)
        ids = self.text_ids(list(texts), images.device)
        pooled, tok = self.encode_texts(ids, want_tokens)
        if want_tokens:
            out["text_tokens"] = F.normalize(tok, dim=-1)
            out["text_mask"] = text_token_mask(ids, self.sot, self.eot)
        out["text"] = F.normalize(pooled, dim=-1)
        return out
