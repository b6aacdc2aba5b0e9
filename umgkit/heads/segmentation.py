"""Semantic segmentation heads: learned pyramid + FPN / UperNet decoder + learned or open-vocab classifier.

``head(fmap)`` takes the backbone's ``dense`` map ``(B, width, h, w)`` (stride ``patch_size``) and
returns logits ``(B, K, H/4, W/4)`` at stride 4 (the caller up-samples to the label size). The trainable
`SimpleFeaturePyramid` (ViTDet) is built from the backbone's declared ``width`` / ``patch_size`` and owned
by the head, so adapters + head are everything that trains.

Classifiers:

- ``learned``: a 1x1 conv to ``num_classes`` (fixed class set).
- ``open_vocab``: pixel features are projected to the backbone's joint dimension D and L2-normalised;
  logits are ``exp(logit_scale) * cos(pixel, text_k)`` against L2-normalised text embeddings of the class
  names (LSeg / OpenSeg style). The text embedding of a class is the re-normalised mean over prompt
  templates (CLIP zero-shot convention). `set_class_names` re-encodes, so the class set can be swapped
  after training (train on COCO-Stuff names, evaluate with ADE20K names); the number of output channels
  follows the names. Text embeddings are a non-persistent buffer: checkpoints never depend on the class
  set. ``logit_scale`` (log inverse temperature) is learnable, initialised to ``ln(1 / 0.07)``.
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
from ._decoders import FPNDecoder, UperDecoder

__all__ = ["SemanticHead", "SemanticOptions", "TextClassifierOptions", "DEFAULT_TEMPLATES",
           "build_semantic_fpn", "build_semantic_uper", "encode_class_names"]

DEFAULT_TEMPLATES = ("a photo of a {}.",)
CLASSIFIERS = ("learned", "open_vocab")


@dataclass
class TextClassifierOptions:
    """Options of the open-vocabulary classifiers, shared by the semantic, panoptic and detection heads."""

    classifier: str = "learned"  # "learned" (fixed class set) or "open_vocab" (cosine to class-name text)
    templates: tuple[str, ...] = DEFAULT_TEMPLATES  # open_vocab: prompts with {} for the class name, averaged
    logit_scale: float = math.log(1 / 0.07)  # open_vocab: initial log inverse temperature of the cosine
    learn_scale: bool = True  # open_vocab: train logit_scale (false keeps it fixed)


@dataclass
class SemanticOptions(TextClassifierOptions):
    pyramid_channels: int = 256  # channels of the learned simple feature pyramid (strides 4-32)
    channels: int = 128  # channels of the decoder (FPN / UperNet)
    dropout: float = 0.1  # Dropout2d before the classifier; 0 = none


@torch.no_grad()
def encode_class_names(text_encoder: Callable[[list[str]], torch.Tensor], names: Sequence[str],
                       templates: Sequence[str] = DEFAULT_TEMPLATES) -> torch.Tensor:
    """``(K, D)`` L2-normalised class embeddings: mean over prompt templates, re-normalised (CLIP's
    zero-shot convention); shared by every open-vocabulary classifier (segmentation, detection)."""
    prompts = [t.format(n) for n in names for t in templates]
    emb = text_encoder(prompts).float()  # (K * T, D)
    emb = F.normalize(emb, dim=-1).reshape(len(names), len(templates), -1).mean(1)
    return F.normalize(emb, dim=-1)


class SemanticHead(nn.Module):
    """Pyramid neck + decoder + classifier; see the module docstring for shapes and classifiers.

    ``text_encoder`` (``list[str] -> (N, D)`` L2-normalised, e.g. ``backbone.encode_text``) is needed
    only for ``open_vocab``; it is kept as a plain callable (not a submodule), so the backbone is not
    registered twice.
    """

    def __init__(self, *, width: int, patch_size: int, decoder: str = "fpn", num_classes: int | None = None,
                 pyramid_channels: int = 256, channels: int = 128, dropout: float = 0.1,
                 classifier: str = "learned", embed_dim: int | None = None,
                 class_names: Sequence[str] | None = None,
                 text_encoder: Callable[[list[str]], torch.Tensor] | None = None,
                 templates: Sequence[str] = DEFAULT_TEMPLATES,
                 logit_scale: float = math.log(1 / 0.07), learn_scale: bool = True,
                 make_neck: Callable[[int], nn.Module] | None = None) -> None:
        super().__init__()
        if classifier not in CLASSIFIERS:
            raise ConfigError(f"head option classifier='{classifier}'; choose one of {CLASSIFIERS}.")
        self.classifier_kind = classifier
        self.neck = (make_neck(pyramid_channels) if make_neck is not None else
                     SimpleFeaturePyramid(width=width, patch_size=patch_size, out_channels=pyramid_channels))
        decoders = {"fpn": FPNDecoder, "uper": UperDecoder}
        if decoder not in decoders:
            raise ValueError(f"decoder='{decoder}'; choose one of {sorted(decoders)}.")
        self.decoder = decoders[decoder](in_channels=pyramid_channels, channels=channels)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.templates = tuple(templates)
        self._text_encoder = text_encoder
        self.class_names: list[str] | None = list(class_names) if class_names is not None else None
        if classifier == "learned":
            if not num_classes:
                raise ValueError("classifier 'learned' needs num_classes (the task passes the dataset's).")
            self.classifier = nn.Conv2d(channels, int(num_classes), 1)
            self.register_buffer("text_embeddings", None, persistent=False)
        else:
            if not embed_dim or text_encoder is None:
                raise ConfigError("classifier 'open_vocab' needs a backbone with a joint space and a text "
                                  "tower (embed_dim and encode_text); pick e.g. umg:tiny or "
                                  "openclip:ViT-B-16, or use head option classifier=learned.")
            if not self.templates or any("{}" not in t for t in self.templates):
                raise ConfigError(f"templates {list(self.templates)}: each needs a '{{}}' for the "
                                  "class name.")
            self.classifier = nn.Conv2d(channels, int(embed_dim), 1)  # pixel features -> joint space D
            self.logit_scale = nn.Parameter(torch.tensor(float(logit_scale)), requires_grad=learn_scale)
            self.register_buffer("text_embeddings", None, persistent=False)
            if self.class_names is None:
                raise ValueError("classifier 'open_vocab' needs class_names (the task passes the dataset's).")
            self.set_class_names(self.class_names)

    @property
    def num_classes(self) -> int:
        if self.classifier_kind == "learned":
            return self.classifier.out_channels
        return int(self.text_embeddings.shape[0])

    @torch.no_grad()
    def encode_names(self, names: Sequence[str]) -> torch.Tensor:
        """``(K, D)`` L2-normalised class embeddings: mean over templates, re-normalised."""
        return encode_class_names(self._text_encoder, names, self.templates)

    def set_class_names(self, names: Sequence[str]) -> None:
        """Open-vocab only: re-encode the class set; the output channels become ``len(names)``."""
        if self.classifier_kind != "open_vocab":
            raise ValueError("set_class_names needs head option classifier=open_vocab; a learned "
                             "classifier has a fixed class set.")
        if not names:
            raise ValueError("set_class_names: give at least one class name.")
        device = self.classifier.weight.device
        self.text_embeddings = self.encode_names(list(names)).to(device)  # (K, D)
        self.class_names = list(names)

    def features(self, fmap: torch.Tensor) -> torch.Tensor:
        """``(B, width, h, w)`` -> decoder features ``(B, channels, H/4, W/4)``."""
        return self.decoder(self.neck(fmap))

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        """``(B, width, h, w)`` -> logits ``(B, K, H/4, W/4)``."""
        x = self.classifier(self.dropout(self.features(fmap)))
        if self.classifier_kind == "learned":
            return x
        x = F.normalize(x, dim=1)  # (B, D, H/4, W/4)
        text = self.text_embeddings.to(x.dtype)  # (K, D)
        return self.logit_scale.exp() * torch.einsum("bdhw,kd->bkhw", x, text)


def _build(backbone: nn.Module, decoder: str, num_classes: int | None, class_names: Sequence[str] | None,
           options: SemanticOptions | None) -> SemanticHead:
    """The one place `SemanticOptions` become `SemanticHead` arguments (both decoders)."""
    options = options or SemanticOptions()
    text_encoder = None
    if options.classifier == "open_vocab" and getattr(backbone, "has_text", False):
        text_encoder = backbone.encode_text
    return SemanticHead(width=backbone.width, patch_size=backbone.patch_size, decoder=decoder,
                        num_classes=num_classes, class_names=class_names,
                        embed_dim=getattr(backbone, "embed_dim", None), text_encoder=text_encoder,
                        make_neck=getattr(backbone, "make_neck", None), **dataclasses.asdict(options))


@HEADS.register("semantic_fpn", tasks=("semantic",), options=SemanticOptions)
def build_semantic_fpn(backbone: nn.Module, num_classes: int | None = None,
                       class_names: Sequence[str] | None = None,
                       options: SemanticOptions | None = None) -> SemanticHead:
    """Semantic FPN on a learned simple feature pyramid; classifier learned or open_vocab.

    The task passes ``num_classes`` and ``class_names``; ``model.head_options`` become ``options``.

    Example:
        >>> from umgkit.backbones import create_backbone
        >>> bb = create_backbone("umg:tiny")
        >>> head = build_semantic_fpn(bb, num_classes=5, options=SemanticOptions(pyramid_channels=32,
        ...                                                                       channels=32))
        >>> tuple(head(bb.dense(torch.zeros(1, 3, 64, 64))).shape)  # stride 4
        (1, 5, 16, 16)
    """
    return _build(backbone, "fpn", num_classes, class_names, options)


@HEADS.register("semantic_uper", tasks=("semantic",), options=SemanticOptions)
def build_semantic_uper(backbone: nn.Module, num_classes: int | None = None,
                        class_names: Sequence[str] | None = None,
                        options: SemanticOptions | None = None) -> SemanticHead:
    """UperNet (PPM + FPN, concatenated at stride 4) on a learned simple feature pyramid."""
    return _build(backbone, "uper", num_classes, class_names, options)
