"""Retrieval model: image and text embeddings in one space; predictions rank images for texts and back."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..config import RunConfig
from ..errors import ModelError
from ..registry import HEADS, MODELS
from .base import TaskModel
from .inputs import PredictInput, PredictRequest, stack_images
from .parts import build_backbone
from .preprocess import Preprocess
from .results import RetrievalPrediction

__all__ = ["RetrievalModel"]


@MODELS.register("retrieval", doc="image-text retrieval: texts ranked per image and images per text")
class RetrievalModel(TaskModel):
    """``forward(images=(B, 3, H, W), texts=list[str] of length M)`` -> ``{"image": (B, D), "text": (M, D),
    "logit_scale": ()}`` (embeddings L2-normalised; either input may be omitted)."""

    task = "retrieval"
    head_task = "retrieval"
    prediction = RetrievalPrediction
    takes_texts = True
    pipeline_tag = "zero-shot-image-classification"

    def forward(self, images: torch.Tensor | None = None, texts: list[str] | None = None) -> dict:
        out: dict[str, torch.Tensor] = {"logit_scale": self.head.logit_scale}
        if images is not None:
            out["image"] = self.head.image(self.backbone.encode_image(images))
        if texts is not None:
            out["text"] = self.head.text(self.backbone.encode_text(list(texts)))
        return out

    @classmethod
    def from_config(cls, cfg: RunConfig, class_names: Sequence[str] | None = None,
                    **_: object) -> RetrievalModel:
        """Backbone + adapter + ``model.head`` (default ``contrastive``); centre-crop preprocessing."""
        backbone, adapter = build_backbone(cfg.model)
        head = HEADS.create(cfg.model.head or "contrastive", cfg.model.head_options,
                            task=cls.head_task or cls.task, backbone=backbone)
        pre = Preprocess(cfg.data.image_size, backbone.image_mean, backbone.image_std, resize="shorter_crop")
        return cls(backbone, head, preprocess=pre, adapter=adapter)

    def start_predict(self, request: PredictRequest) -> None:
        """The query texts are encoded once per call: ``state["text"]`` (T, D)."""
        if not request.texts:
            raise ModelError("a retrieval model ranks texts against images: give texts=[...] (--texts).")
        request.state = {"text": self(texts=list(request.texts))["text"].float()}

    def predict(self, batch: list[PredictInput], request: PredictRequest) -> list[RetrievalPrediction]:
        """Every query text ranked for each image by cosine similarity, best first."""
        texts, text_emb = request.texts, request.state["text"]  # (T, D)
        emb = self(images=stack_images(batch, request.device))["image"].float()  # (B, D)
        sims = (emb @ text_emb.t()).cpu()  # (B, T)
        out = []
        for item, row, e in zip(batch, sims, emb.cpu(), strict=True):
            order = row.argsort(descending=True, stable=True).tolist()
            out.append(self.prediction(item.source, item.image_id, item.rgb, [], embedding=e.numpy(),
                                       texts=[texts[i] for i in order],
                                       text_scores=[round(float(row[i]), 6) for i in order],
                                       text_embeddings=text_emb.cpu().numpy()))
        return out
