"""CoOp (Zhou et al., 2022): learned prompt tokens before each class name, trained through the frozen text
tower; the image tower is untouched.

A class prompt is ``[V]_1 ... [V]_M <class name>.``; the ``M`` context vectors (width ``W`` of the text
tower's token embeddings) are the only trainable parameters: ``M * W`` (16 x 512 = 8,192 for ViT-B/16),
or ``C * M * W`` with one context per class (``class_specific``, CoOp's CSC). They enter the tower through
the backbone contract's prompt-token hook (`Backbone.encode_text_with_context`), so every family with a
text tower (umg, open_clip, transformers) is served by the same code. The context lives in a
``text_prompt`` module the adapter adds to the backbone; the ``clip`` head reads class features from it.

``ctx_init`` (e.g. ``"a photo of a"``) starts the context at those words' token embeddings, so before
training the model equals zero-shot CLIP with the prompt ``"a photo of a {}."``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError, ModelError
from ..registry import ADAPTERS
from ._base import Adapter, check_positive

__all__ = ["CoOpAdapter", "CoOpConfig", "CoOpPrompt", "TextPrompt", "initial_context", "require_text_tower"]

DEFAULT_CONTEXT = 16  # CoOp's M


class TextPrompt(nn.Module):
    """Base of the ``text_prompt`` modules: class names -> class text features through learned tokens."""

    conditioned = False  # True: features depend on the image (``(B, C, D)``)

    def __init__(self, suffix: str) -> None:
        super().__init__()
        self.suffix = suffix

    def texts(self, names: Sequence[str]) -> list[str]:
        """What follows the context: the class name (underscores as spaces) and the suffix."""
        return [f"{str(n).replace('_', ' ')}{self.suffix}" for n in names]

    def check_class_names(self, names: list[str]) -> None:
        """Raise a ModelError when the prompt cannot encode ``names`` (per-class parameters)."""

    def class_features(self, backbone: nn.Module, names: Sequence[str],
                       image_features: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError


class CoOpPrompt(TextPrompt):
    """``coop_ctx``: ``(M, W)`` shared by all classes, or ``(C, M, W)`` one per class."""

    def __init__(self, context: torch.Tensor, suffix: str, class_names: Sequence[str] | None = None) -> None:
        super().__init__(suffix)
        self.coop_ctx = nn.Parameter(context)
        self.trained_names = None if class_names is None else [str(n) for n in class_names]

    def check_class_names(self, names: list[str]) -> None:
        if self.coop_ctx.dim() == 3 and names != self.trained_names:
            raise ModelError(f"this CoOp model learned one context per class (class_specific) for "
                             f"{len(self.trained_names or [])} classes; it cannot name other classes. Use "
                             "the trained names, or train with class_specific: false (a shared context "
                             "takes any class name).")

    def class_features(self, backbone: nn.Module, names: Sequence[str],
                       image_features: torch.Tensor | None = None) -> torch.Tensor:
        self.check_class_names([str(n) for n in names])
        return backbone.encode_text_with_context(self.texts(names), self.coop_ctx).float()  # (C, D)


def require_text_tower(method: str, model: nn.Module) -> None:
    if not getattr(model, "has_text", False):
        raise ConfigError(f"adapter '{method}' learns prompt tokens in the text tower; "
                          f"{getattr(model, 'name', type(model).__name__)} has none. Use a backbone with "
                          "one (umg:tiny, openclip:ViT-B-16, hf:openai/clip-vit-base-patch16).")


def initial_context(model: nn.Module, method: str, n_ctx: int | None, ctx_init: str | None,
                    rows: int | None = None) -> torch.Tensor:
    """``(M, W)`` (or ``(rows, M, W)``): the words' token embeddings, else N(0, 0.02) as CoOp draws them."""
    table = model.text_token_embedding.weight
    if ctx_init:
        words = model.text_word_embeddings(ctx_init)
        if n_ctx is not None and n_ctx != words.shape[0]:
            raise ConfigError(f"adapter '{method}': ctx_init={ctx_init!r} is {words.shape[0]} tokens but "
                              f"n_ctx={n_ctx}; drop n_ctx (it follows ctx_init) or change one of them.",
                              key="model.adapter_options.n_ctx")
        ctx = words.float()
        return ctx if rows is None else ctx.unsqueeze(0).repeat(rows, 1, 1)
    shape = (n_ctx or DEFAULT_CONTEXT, table.shape[1])
    ctx = torch.empty(shape if rows is None else (rows, *shape), device=table.device)
    return nn.init.normal_(ctx, std=0.02)


@dataclass
class CoOpConfig:
    n_ctx: int | None = None  # learned tokens M; null = 16, or the token count of ctx_init
    ctx_init: str | None = None  # words whose embeddings start the context ("a photo of a"); null = random
    class_specific: bool = False  # one context per class (CSC): no new class names at inference then
    suffix: str = "."  # text after the class name

    def __post_init__(self) -> None:
        if self.n_ctx is not None:
            check_positive("coop", n_ctx=self.n_ctx)


@ADAPTERS.register("coop")
class CoOpAdapter(Adapter):
    """Learned context tokens in the text tower (see the module docstring); needs head ``clip``."""

    method = "coop"
    config_cls = CoOpConfig
    changes_image_features = False

    def inject(self, model: nn.Module) -> None:
        require_text_tower(self.method, model)
        c = self.config
        rows = None
        if c.class_specific:
            if not self.class_names:
                raise ConfigError("adapter 'coop' with class_specific: true needs the class names to size "
                                  "its contexts; build it through build_model with class names.")
            rows = len(self.class_names)
        ctx = initial_context(model, self.method, c.n_ctx, c.ctx_init, rows)
        model.text_prompt = CoOpPrompt(ctx, c.suffix, self.class_names if c.class_specific else None)

    def owns(self, name: str) -> bool:
        return any(part.startswith("coop_") for part in name.split("."))
