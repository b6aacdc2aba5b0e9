"""Mask2Former-style mask-classification head on umgkit's learned simple feature pyramid.

``head(fmap)`` takes the backbone's ``dense`` map ``(B, width, h, w)`` (stride ``patch_size``); a trainable
`SimpleFeaturePyramid` (owned by the head, like the semantic heads') makes strides 4..32, transformers'
pixel decoder and masked-attention decoder (see `umgkit.heads.mask2former`) turn ``num_queries`` learned
queries into one mask and one class distribution each. Output::

    {"pred_logits": (B, Q, K + 1),       # last column = "no object"
     "pred_masks":  (B, Q, H/4, W/4),    # mask logits at stride 4
     "aux": [{"pred_logits", "pred_masks"}, ...]}   # the earlier decoder layers (auxiliary losses)

Classifiers: ``learned`` (a linear layer to ``K + 1``) or ``open_vocab``: each query is projected to the
backbone's joint space and scored ``exp(logit_scale) * cos(query, text_k)`` against the class-name text
embeddings, encoded exactly as the open-vocabulary semantic head encodes them (its `encode_names` is
reused: mean over prompt templates, re-normalised). "No object" is a learned embedding in the same space,
so `set_class_names` can swap the class set after training.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.pyramid import SimpleFeaturePyramid
from ..errors import ConfigError
from ..registry import HEADS
from ._decoders import LEVELS
from .mask2former import Mask2FormerCore, mask2former_config
from .segmentation import DEFAULT_TEMPLATES, SemanticHead, TextClassifierOptions

__all__ = ["Mask2FormerHead", "Mask2FormerOptions", "build_mask2former"]

CLASSIFIERS = ("learned", "open_vocab")


class Mask2FormerHead(nn.Module):
    """Pyramid + Mask2Former decoder + class head; see the module docstring for shapes."""

    def __init__(self, *, width: int, patch_size: int, num_classes: int | None = None,
                 class_names: Sequence[str] | None = None, classifier: str = "learned",
                 embed_dim: int | None = None,
                 text_encoder: Callable[[list[str]], torch.Tensor] | None = None,
                 templates: Sequence[str] = DEFAULT_TEMPLATES, logit_scale: float = math.log(1 / 0.07),
                 learn_scale: bool = True, hidden_dim: int = 256, num_queries: int = 100,
                 decoder_layers: int = 10, encoder_layers: int = 6, num_heads: int = 8,
                 dim_feedforward: int = 2048, encoder_feedforward_dim: int = 1024,
                 make_neck: Callable[[int], nn.Module] | None = None) -> None:
        super().__init__()
        if classifier not in CLASSIFIERS:
            raise ConfigError(f"head option classifier='{classifier}'; choose one of {CLASSIFIERS}.")
        self.classifier_kind = classifier
        self.num_queries = int(num_queries)
        self.neck = (make_neck(hidden_dim) if make_neck is not None else
                     SimpleFeaturePyramid(width=width, patch_size=patch_size, out_channels=hidden_dim))
        config = mask2former_config(hidden_dim=hidden_dim, num_queries=num_queries,
                                    decoder_layers=decoder_layers, encoder_layers=encoder_layers,
                                    num_heads=num_heads, dim_feedforward=dim_feedforward,
                                    encoder_feedforward_dim=encoder_feedforward_dim)
        self.decoder = Mask2FormerCore(config, in_channels=hidden_dim)
        self.templates = tuple(templates)
        self._text_encoder = text_encoder
        self.class_names = list(class_names) if class_names is not None else None
        self.register_buffer("text_embeddings", None, persistent=False)
        if classifier == "learned":
            if not num_classes:
                raise ValueError("classifier 'learned' needs num_classes (the task passes the dataset's).")
            self.class_embed = nn.Linear(hidden_dim, int(num_classes) + 1)
        else:
            if not embed_dim or text_encoder is None:
                raise ConfigError("classifier 'open_vocab' needs a backbone with a joint space and a text "
                                  "tower (embed_dim and encode_text); pick e.g. umg:tiny or "
                                  "openclip:ViT-B-16, or use head option classifier=learned.")
            if self.class_names is None:
                raise ValueError("classifier 'open_vocab' needs class_names (the task passes the dataset's).")
            self.class_embed = nn.Linear(hidden_dim, int(embed_dim))
            self.void_embedding = nn.Parameter(torch.randn(int(embed_dim)) / math.sqrt(embed_dim))
            self.logit_scale = nn.Parameter(torch.tensor(float(logit_scale)), requires_grad=learn_scale)
            self.set_class_names(self.class_names)

    @property
    def num_classes(self) -> int:
        if self.classifier_kind == "learned":
            return self.class_embed.out_features - 1
        return int(self.text_embeddings.shape[0])

    # the open-vocabulary semantic head's text encoding, reused as is (same templates, same averaging)
    encode_names = SemanticHead.encode_names

    def set_class_names(self, names: Sequence[str]) -> None:
        """Open-vocab only: re-encode the class set; logits become ``(B, Q, len(names) + 1)``."""
        if self.classifier_kind != "open_vocab":
            raise ValueError("set_class_names needs head option classifier=open_vocab; a learned classifier "
                             "has a fixed class set.")
        if not names:
            raise ValueError("set_class_names: give at least one class name.")
        self.text_embeddings = self.encode_names(list(names)).to(self.class_embed.weight.device)  # (K, D)
        self.class_names = list(names)

    def classify(self, queries: torch.Tensor) -> torch.Tensor:
        """``(B, Q, hidden)`` -> ``(B, Q, K + 1)`` logits, "no object" last."""
        x = self.class_embed(queries)
        if self.classifier_kind == "learned":
            return x
        x = F.normalize(x, dim=-1)
        text = torch.cat([self.text_embeddings.to(x.dtype), F.normalize(self.void_embedding, dim=0)[None]])
        return self.logit_scale.exp() * x @ text.T

    def forward(self, fmap: torch.Tensor) -> dict:
        pyramid = self.neck(fmap)
        queries, masks = self.decoder([pyramid[k] for k in LEVELS])
        logits = [self.classify(q) for q in queries]
        aux = [{"pred_logits": c, "pred_masks": m} for c, m in zip(logits[:-1], masks[:-1], strict=True)]
        return {"pred_logits": logits[-1], "pred_masks": masks[-1], "aux": aux}


@dataclass
class Mask2FormerOptions(TextClassifierOptions):
    """Mask2Former's defaults; the classifier options come from `TextClassifierOptions`."""

    hidden_dim: int = 256  # width of the pyramid, pixel decoder and queries (a multiple of 32)
    num_queries: int = 100  # learned queries = most segments per image
    decoder_layers: int = 10  # predictions of the masked-attention decoder (10 = 9 layers + the first)
    encoder_layers: int = 6  # deformable-attention layers of the pixel decoder
    num_heads: int = 8  # attention heads in the pixel and query decoders
    dim_feedforward: int = 2048  # feed-forward width of the query decoder
    encoder_feedforward_dim: int = 1024  # feed-forward width of the pixel decoder


@HEADS.register("mask2former", tasks=("panoptic",), options=Mask2FormerOptions)
def build_mask2former(backbone: nn.Module, num_classes: int | None = None,
                      class_names: Sequence[str] | None = None,
                      options: Mask2FormerOptions | None = None) -> Mask2FormerHead:
    """Mask2Former head on a learned simple feature pyramid; classifier learned or open_vocab.

    The task passes ``num_classes`` and ``class_names``; ``model.head_options`` become ``options``.

    Example:
        >>> from umgkit.backbones import create_backbone
        >>> bb = create_backbone("umg:tiny")
        >>> small = Mask2FormerOptions(hidden_dim=64, num_queries=10, decoder_layers=3, encoder_layers=1,
        ...                            num_heads=4, dim_feedforward=128)
        >>> head = build_mask2former(bb, num_classes=5, options=small)
        >>> out = head(bb.dense(torch.zeros(1, 3, 64, 64)))
        >>> tuple(out["pred_logits"].shape), tuple(out["pred_masks"].shape), len(out["aux"])
        ((1, 10, 6), (1, 10, 16, 16), 2)
    """
    options = options or Mask2FormerOptions()
    text_encoder = None
    if options.classifier == "open_vocab" and getattr(backbone, "has_text", False):
        text_encoder = backbone.encode_text
    return Mask2FormerHead(width=backbone.width, patch_size=backbone.patch_size, num_classes=num_classes,
                           class_names=class_names, embed_dim=getattr(backbone, "embed_dim", None),
                           text_encoder=text_encoder, make_neck=getattr(backbone, "make_neck", None),
                           **dataclasses.asdict(options))
