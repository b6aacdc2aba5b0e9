"""Classification heads on a backbone's pooled image embedding.

Both heads take ``features (B, F)`` — the output of ``backbone.encode_image`` (L2-normalised; ``F`` is
``embed_dim`` for joint-space backbones, ``width`` for vision-only timm ones) — and return logits
``(B, num_classes)``. Working on features rather than images lets the frozen-feature cache train a head
without running the backbone.

- ``linear``: ``nn.Linear(F, num_classes)``; the linear probe / LoRA head.
- ``text_init``: cosine classifier whose rows start as the class names' text embeddings averaged over
  prompt templates (CLIP zero-shot), times a learnable ``exp(logit_scale)``; useful with no training.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.prompts import dataset_template
from ..errors import ConfigError
from ..registry import HEADS

__all__ = ["LinearHead", "LinearOptions", "TextInitHead", "TextInitOptions", "build_linear_head",
           "build_text_init_head", "feature_dim", "resolve_templates", "text_classifier_weights"]

DEFAULT_LOGIT_SCALE = math.log(1 / 0.07)
DATASET_PREFIX = "dataset:"  # templates "dataset:<name>": the CoOp prompt of that dataset


def feature_dim(backbone: nn.Module) -> int:
    """``F`` of ``encode_image``: the joint-space ``embed_dim``, or ``width`` for vision-only backbones."""
    dim = getattr(backbone, "embed_dim", None) or getattr(backbone, "width", None)
    if not dim:
        raise ValueError(f"{type(backbone).__name__} declares neither embed_dim nor width; classification "
                         "heads are built from a backbone's declared shapes.")
    return int(dim)


class LinearHead(nn.Module):
    """``(B, F) -> (B, C)`` affine map of ``input_scale * features``.

    ``encode_image`` features are unit-norm, so each coordinate is ~``1/sqrt(F)``; nn.Linear's init and
    Adam's step sizes assume ~unit inputs, so the default ``input_scale = sqrt(F)`` restores that scale
    (without it a linear probe's logits stay tiny and it needs many times more steps).
    """

    def __init__(self, *, in_dim: int, num_classes: int, input_scale: float | None = None) -> None:
        super().__init__()
        self.fc = nn.Linear(in_dim, num_classes)
        self.input_scale = float(in_dim) ** 0.5 if input_scale is None else float(input_scale)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features * self.input_scale)


class TextInitHead(nn.Module):
    """``logits = exp(logit_scale) * normalize(features) @ normalize(weight).T``; weight ``(C, F)``.

    With a ``backbone`` (a text tower), `set_class_names` swaps the vocabulary: the rows become the new
    names' prompt embeddings (zero-shot for those classes; fine-tuned rows of the old names are dropped).
    The backbone is kept as a plain reference, not a submodule, so it is not registered twice.
    """

    classifier_kind = "text_init"

    def __init__(self, *, weight: torch.Tensor, logit_scale: float = DEFAULT_LOGIT_SCALE,
                 learn_scale: bool = True, backbone: nn.Module | None = None,
                 templates: str | Sequence[str] = "simple") -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone().float())
        self.logit_scale = nn.Parameter(torch.tensor(float(logit_scale)), requires_grad=learn_scale)
        self._backbone = [backbone]  # a list hides it from nn.Module's submodule registration
        self.templates = templates

    def set_class_names(self, names: Sequence[str]) -> None:
        """Re-encode the rows from ``names`` (text tower only); the output size becomes ``len(names)``."""
        if self._backbone[0] is None:
            raise ValueError("this text_init head was built without its backbone; it cannot encode new "
                             "names.")
        rows = text_classifier_weights(self._backbone[0], list(names), self.templates)
        self.weight = nn.Parameter(rows.to(self.weight.device), requires_grad=self.weight.requires_grad)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        w = F.normalize(self.weight, dim=-1)
        return self.logit_scale.exp() * F.normalize(features, dim=-1) @ w.t().to(features.dtype)


def resolve_templates(templates: str | Sequence[str]) -> list[Callable[[str], str]]:
    """``"openai"`` (CLIP's 80 ImageNet prompts), ``"simple"`` (open_clip's 18), ``"dataset:<name>"`` (the
    CoOp protocol's one prompt of that dataset, `umgkit.data.prompts`), one ``"...{}..."`` string, or a
    list of such strings -> prompt functions ``name -> text``."""
    if isinstance(templates, str) and templates.startswith(DATASET_PREFIX):
        templates = dataset_template(templates[len(DATASET_PREFIX):])
    if isinstance(templates, str) and templates in ("openai", "simple"):
        from open_clip import zero_shot_metadata as meta

        chosen = meta.OPENAI_IMAGENET_TEMPLATES if templates == "openai" else meta.SIMPLE_IMAGENET_TEMPLATES
        return list(chosen)
    items = [templates] if isinstance(templates, str) else list(templates)
    bad = [t for t in items if not isinstance(t, str) or "{}" not in t]
    if bad or not items:
        raise ConfigError(f"head_options.templates={templates!r}: use 'openai', 'simple', 'dataset:<name>' "
                          "(e.g. dataset:oxford_pets), or prompt strings containing '{}' for the class name, "
                          "e.g. 'a photo of a {}.'.")
    return [lambda c, t=t: t.format(c) for t in items]


@torch.no_grad()
def text_classifier_weights(backbone: nn.Module, class_names: Sequence[str],
                            templates: str | Sequence[str] = "simple") -> torch.Tensor:
    """``(C, D)``: per class, the mean of the L2-normalised prompt embeddings, re-normalised (CLIP recipe).

    Underscores in class names become spaces (folder names like ``golden_retriever``).
    """
    if not getattr(backbone, "has_text", False):
        raise ConfigError(f"head 'text_init' needs a backbone with a text tower; "
                          f"{getattr(backbone, 'name', type(backbone).__name__)} has none. "
                          "Use model.head=linear "
                          "or a joint-space backbone (umg:tiny, openclip:ViT-B-16).")
    prompts = resolve_templates(templates)
    rows = []
    for name in class_names:
        text = str(name).replace("_", " ")
        emb = backbone.encode_text([p(text) for p in prompts])  # (T, D), normalised
        rows.append(F.normalize(F.normalize(emb.float(), dim=-1).mean(dim=0), dim=-1))
    return torch.stack(rows)


def _backbone_logit_scale(backbone: nn.Module) -> float | None:
    own = getattr(backbone, "logit_scale", None)
    if own is None:  # open_clip wrappers keep the CLIP model (and its scale) as `.model`
        own = getattr(getattr(backbone, "model", None), "logit_scale", None)
    return float(own.detach()) if isinstance(own, torch.Tensor) else None


@dataclass
class LinearOptions:
    input_scale: float | None = None  # features are multiplied by this before the linear map; null = sqrt(F)


@dataclass
class TextInitOptions:
    templates: str | tuple[str, ...] = "simple"  # openai (80), simple (18), dataset:<name>, or {} prompts
    logit_scale: float | str | None = None  # log inverse temperature; null = ln(1/0.07), "backbone" = its own
    learn_scale: bool = True  # train logit_scale with the class rows (false keeps it fixed)


@HEADS.register("linear", tasks=("classification",), options=LinearOptions)
def build_linear_head(backbone: nn.Module, num_classes: int, class_names: Sequence[str] | None = None,
                      options: LinearOptions | None = None) -> LinearHead:
    """Linear classifier over ``encode_image`` features.

    ``input_scale`` defaults to ``sqrt(F)`` (see `LinearHead`); ``class_names`` is accepted and unused.
    """
    options = options or LinearOptions()
    return LinearHead(in_dim=feature_dim(backbone), num_classes=int(num_classes),
                      input_scale=options.input_scale)


@HEADS.register("text_init", tasks=("classification",), options=TextInitOptions)
def build_text_init_head(backbone: nn.Module, num_classes: int, class_names: Sequence[str] | None = None,
                         options: TextInitOptions | None = None) -> TextInitHead:
    """Zero-shot classifier from the class names' prompt embeddings.

    ``logit_scale``: ``None`` = ``ln(1/0.07)``; ``"backbone"`` = the backbone's own learned scale (falls
    back to ``ln(1/0.07)`` when it has none); or a number (log inverse temperature).
    """
    options = options or TextInitOptions()
    templates, logit_scale = options.templates, options.logit_scale
    names = list(class_names or [])
    if len(names) != int(num_classes):
        raise ValueError(f"head 'text_init' got {len(names)} class names for num_classes={num_classes}; the "
                         "dataset must provide class_names (or set data.class_names to a file of names).")
    if logit_scale == "backbone":
        logit_scale = _backbone_logit_scale(backbone)
    scale = DEFAULT_LOGIT_SCALE if logit_scale is None else float(logit_scale)
    weight = text_classifier_weights(backbone, names, templates)
    return TextInitHead(weight=weight, logit_scale=scale, learn_scale=options.learn_scale, backbone=backbone,
                        templates=templates)
