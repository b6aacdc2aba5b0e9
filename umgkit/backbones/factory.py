"""`create_backbone`: the one way to build a backbone from a registry string."""

from __future__ import annotations

from typing import Any

from ..registry import BACKBONES
from .base import Backbone

__all__ = ["create_backbone", "list_backbones"]


def create_backbone(name: str, pretrained: str | None = None, **kwargs: Any) -> Backbone:
    """Build a frozen backbone from ``"umg:<arch|ckpt>"``, ``"openclip:<model>"`` or ``"timm:<model>"``.

    ``pretrained`` is a local weights file (or a hub tag where the family supports one); ``kwargs`` go to
    the family's builder (e.g. ``depth=2`` for timm).

    Example:
        >>> import torch
        >>> from umgkit.backbones import create_backbone
        >>> bb = create_backbone("umg:tiny")
        >>> bb.encode_image(torch.zeros(1, 3, 64, 64)).shape
        torch.Size([1, 128])
    """
    return BACKBONES.build(name, pretrained=pretrained, **kwargs)


def list_backbones() -> list[str]:
    """Registered backbone prefixes / names."""
    return BACKBONES.names()
