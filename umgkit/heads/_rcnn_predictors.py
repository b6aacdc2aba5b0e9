"""Open-vocabulary pieces that plug into torchvision's `RoIHeads` in place of its box / mask predictors.

torchvision's RoI heads call ``box_roi_pool(features, proposals, image_shapes)``, then ``box_head``,
then ``box_predictor`` and expect ``(class_logits (N, 1 + K), box_regression (N, 4 * (1 + K)))`` with
column 0 = background. The modules here keep that contract while the K class columns come from cosine
similarity to text embeddings of class names, so the class set can change after training:

- `TextClassifier`: ``(N, D)`` L2-normalised embeddings -> ``exp(logit_scale) * cos`` against
  ``[background; text_1..K]``; the background embedding is learned (no text describes "nothing").
- `TextBoxPredictor` (classifier ``open_vocab``): RoI features are projected to the joint space D.
- `RegionEmbedPool` + `RegionEmbedBoxHead` + `RegionEmbedPredictor` (classifier ``region_embed``): the
  class scores use the backbone's own ``embed_regions`` of each sampled proposal; the RoI-aligned
  pyramid features still drive box regression.
Box regression (and the mask, see `ClassAgnosticMask`) is class-agnostic and repeated over the 1 + K
columns, because a per-class regressor cannot exist for classes named only at test time.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TextClassifier", "TextBoxPredictor", "RegionEmbedPool", "RegionEmbedBoxHead",
           "RegionEmbedPredictor", "ClassAgnosticMask"]


class TextClassifier(nn.Module):
    """Cosine classifier against class-name text embeddings plus a learned background embedding.

    ``text_embeddings`` ``(K, D)`` is a non-persistent buffer set by the owning head (checkpoints never
    depend on the class set); ``logit_scale`` is the learnable log inverse temperature.
    """

    def __init__(self, embed_dim: int, logit_scale: float = math.log(1 / 0.07), learn_scale: bool = True):
        super().__init__()
        self.background = nn.Parameter(F.normalize(torch.randn(int(embed_dim)), dim=0))
        self.logit_scale = nn.Parameter(torch.tensor(float(logit_scale)), requires_grad=learn_scale)
        self.register_buffer("text_embeddings", None, persistent=False)

    @property
    def num_classes(self) -> int:
        return int(self.text_embeddings.shape[0])

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        """``(N, D)`` L2-normalised -> logits ``(N, 1 + K)``, column 0 = background."""
        bank = torch.cat([F.normalize(self.background, dim=0)[None], self.text_embeddings.to(emb)])
        return self.logit_scale.exp() * emb @ bank.t()


def _repeat_boxes(deltas: torch.Tensor, columns: int) -> torch.Tensor:
    """Class-agnostic ``(N, 4)`` deltas -> ``(N, 4 * columns)`` as torchvision's RoI heads expect."""
    return deltas.repeat(1, columns)


class TextBoxPredictor(nn.Module):
    """``(N, in_channels)`` box-head features -> (logits vs text (N, 1 + K), deltas (N, 4 * (1 + K)))."""

    def __init__(self, in_channels: int, classifier: TextClassifier):
        super().__init__()
        self.proj = nn.Linear(in_channels, classifier.background.numel())
        self.bbox_pred = nn.Linear(in_channels, 4)
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.flatten(1)
        logits = self.classifier(F.normalize(self.proj(x), dim=-1))
        return logits, _repeat_boxes(self.bbox_pred(x), logits.shape[1])


class RegionEmbedPool(nn.Module):
    """RoIAlign on the pyramid (for regression) and ``embed_regions`` of the same proposals (for classes).

    ``features["image"]`` must hold the padded image batch ``(B, 3, H, W)`` the proposals refer to;
    ``embed_regions`` (``(images, list[(K_i, 4)]) -> (sum K_i, D)``, e.g. ``backbone.embed_regions``) is a
    plain callable, so the backbone is not registered twice.
    """

    def __init__(self, roi_pool: nn.Module, embed_regions: Callable):
        super().__init__()
        self.roi_pool = roi_pool
        self._embed_regions = embed_regions

    def forward(self, features: dict[str, torch.Tensor], proposals: list[torch.Tensor],
                image_shapes: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.roi_pool(features, proposals, image_shapes)  # (N, C, S, S)
        return pooled, self._embed_regions(features["image"], proposals)  # (N, D)


class RegionEmbedBoxHead(nn.Module):
    """Runs the usual box head on the pooled features and passes the region embeddings through."""

    def __init__(self, box_head: nn.Module):
        super().__init__()
        self.box_head = box_head

    def forward(self, inputs: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        pooled, emb = inputs
        return self.box_head(pooled), emb


class RegionEmbedPredictor(nn.Module):
    """(box-head features (N, in), region embeddings (N, D)) -> (logits (N, 1 + K), deltas)."""

    def __init__(self, in_channels: int, classifier: TextClassifier):
        super().__init__()
        self.bbox_pred = nn.Linear(in_channels, 4)
        self.classifier = classifier

    def forward(self, inputs: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x, emb = inputs
        logits = self.classifier(F.normalize(emb.float(), dim=-1).to(x.dtype))
        return logits, _repeat_boxes(self.bbox_pred(x.flatten(1)), logits.shape[1])


class ClassAgnosticMask(nn.Module):
    """One mask logit map per RoI, repeated to ``1 + K`` channels for torchvision's mask loss/inference."""

    def __init__(self, predictor: nn.Module, num_classes: Callable[[], int]):
        super().__init__()
        self.predictor = predictor  # e.g. MaskRCNNPredictor(..., num_classes=1)
        self._num_classes = num_classes  # the current K (the text classifier's, owned by the box branch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.predictor(x)  # (N, 1, M, M)
        return logits.expand(-1, self._num_classes() + 1, -1, -1)
