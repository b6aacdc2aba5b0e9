"""transformers' Mask2Former parts behind umgkit's pyramid: pixel decoder, masked-attention decoder, loss.

Nothing here re-implements Mask2Former: `Mask2FormerCore` subclasses transformers'
``Mask2FormerPreTrainedModel`` only to reuse its weight initialisation, and holds its
``Mask2FormerPixelDecoder`` (multi-scale deformable-attention encoder over strides 8/16/32 + FPN to
stride 4) and ``Mask2FormerTransformerModule`` (learned queries, masked cross-attention round-robin over
the three scales, per-layer mask predictions). `SetCriterion` wraps ``Mask2FormerLoss`` (Hungarian
matching with scipy on sampled points: class cost + sigmoid BCE + dice; importance-sampled point losses;
"no object" class down-weighted) and adds the per-layer auxiliary losses with their weights.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import Mask2FormerConfig
from transformers.models.mask2former.modeling_mask2former import (
    Mask2FormerLoss,
    Mask2FormerPixelDecoder,
    Mask2FormerPreTrainedModel,
    Mask2FormerTransformerModule,
)

from ..errors import ConfigError

__all__ = ["mask2former_config", "Mask2FormerCore", "SetCriterion"]


def mask2former_config(*, hidden_dim: int, num_queries: int, decoder_layers: int, encoder_layers: int,
                       num_heads: int, dim_feedforward: int, encoder_feedforward_dim: int,
                       num_labels: int = 1, **loss) -> Mask2FormerConfig:
    """A backbone-less ``Mask2FormerConfig``; ``decoder_layers`` counts the query read-out before the first
    masked-attention layer (transformers' convention: 10 = 9 attention layers, 10 predictions)."""
    if hidden_dim % 32:
        raise ConfigError(f"head option hidden_dim={hidden_dim}: Mask2Former's GroupNorm(32) needs "
                          "a multiple of 32 (e.g. 64, 128, 256).")
    if hidden_dim % num_heads:
        raise ConfigError(f"head option hidden_dim={hidden_dim} is not divisible by num_heads={num_heads}.")
    if decoder_layers < 2:
        raise ConfigError(f"head option decoder_layers={decoder_layers}: need at least 2 (one "
                          "masked-attention layer after the initial read-out).")
    return Mask2FormerConfig(backbone_config=None, num_labels=num_labels, feature_size=hidden_dim,
                             mask_feature_size=hidden_dim, hidden_dim=hidden_dim, num_queries=num_queries,
                             decoder_layers=decoder_layers, encoder_layers=encoder_layers,
                             num_attention_heads=num_heads, dim_feedforward=dim_feedforward,
                             encoder_feedforward_dim=encoder_feedforward_dim, dropout=0.0,
                             feature_strides=[4, 8, 16, 32], common_stride=4, **loss)


class Mask2FormerCore(Mask2FormerPreTrainedModel):
    """Pixel decoder + transformer decoder over a 4-level pyramid with ``in_channels`` channels each.

    ``forward([p2, p3, p4, p5])`` (fine -> coarse, strides 4..32) returns ``(queries, masks)``: one entry
    per prediction layer, ``queries[l]`` ``(B, Q, hidden)`` (layer-normed, for the class head) and
    ``masks[l]`` ``(B, Q, H/4, W/4)`` mask logits.
    """

    def __init__(self, config: Mask2FormerConfig, in_channels: int) -> None:
        super().__init__(config)
        self.pixel_decoder = Mask2FormerPixelDecoder(config, feature_channels=[int(in_channels)] * 4)
        self.transformer = Mask2FormerTransformerModule(in_features=config.feature_size, config=config)
        self.post_init()
        # transformers' own per-module initialisation (deformable sampling grid, xavier decoder layers,
        # level embeddings); children first so a parent's special init wins, as transformers orders it
        with torch.no_grad():
            for module in reversed(list(self.modules())):
                self._init_weights(module)

    def forward(self, feats: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        pix = self.pixel_decoder(feats)
        out = self.transformer(list(pix.multi_scale_features), pix.mask_features)
        queries = [h.transpose(0, 1) for h in out.intermediate_hidden_states]  # (Q, B, C) -> (B, Q, C)
        return queries, list(out.masks_queries_logits)


class SetCriterion(nn.Module):
    """Weighted Mask2Former loss on the last layer plus every auxiliary layer.

    ``forward(class_logits, mask_logits, masks, labels)``: per layer ``(B, Q, K+1)`` / ``(B, Q, h, w)``
    lists (last = final); per image ``masks`` ``(K_i, H, W)`` float and ``labels`` ``(K_i,)`` int64.
    Returns ``{"loss", "ce", "mask", "dice"}`` (the last three: final layer, unweighted, detached).
    """

    def __init__(self, *, num_classes: int, class_weight: float = 2.0, mask_weight: float = 5.0,
                 dice_weight: float = 5.0, no_object_weight: float = 0.1, num_points: int = 12544,
                 oversample_ratio: float = 3.0, importance_sample_ratio: float = 0.75) -> None:
        super().__init__()
        cfg = Mask2FormerConfig(backbone_config=None, num_labels=num_classes, class_weight=class_weight,
                                mask_weight=mask_weight, dice_weight=dice_weight,
                                no_object_weight=no_object_weight, train_num_points=num_points,
                                oversample_ratio=oversample_ratio,
                                importance_sample_ratio=importance_sample_ratio)
        self.loss = Mask2FormerLoss(cfg, weight_dict={})
        self.weights = {"loss_cross_entropy": class_weight, "loss_mask": mask_weight,
                        "loss_dice": dice_weight}

    def forward(self, class_logits: list[torch.Tensor], mask_logits: list[torch.Tensor],
                masks: list[torch.Tensor], labels: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        total, last = None, {}
        for cls, msk in zip(class_logits, mask_logits, strict=True):
            parts = self._layer(cls.float(), msk.float(), masks, labels)
            value = sum(self.weights[k] * v for k, v in parts.items())
            total = value if total is None else total + value
            last = parts
        return {"loss": total, "ce": last["loss_cross_entropy"].detach(), "mask": last["loss_mask"].detach(),
                "dice": last["loss_dice"].detach()}

    def _layer(self, cls, msk, masks, labels) -> dict[str, torch.Tensor]:
        if sum(len(lab) for lab in labels) == 0:  # nothing to match: every query is "no object"
            self.loss.get_num_masks(labels, cls.device)  # its all-reduce: other processes wait for it
            target = torch.full(cls.shape[:2], cls.shape[-1] - 1, dtype=torch.int64, device=cls.device)
            ce = nn.functional.cross_entropy(cls.transpose(1, 2), target, weight=self.loss.empty_weight)
            zero = msk.sum() * 0.0
            return {"loss_cross_entropy": ce, "loss_mask": zero, "loss_dice": zero}
        return self.loss(masks_queries_logits=msk, class_queries_logits=cls, mask_labels=masks,
                         class_labels=labels)
