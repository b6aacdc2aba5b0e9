"""Adapter-only export for mmseg runs: the adapter's weights in `umgkit.adapters.save_adapter` format.

An mmseg checkpoint holds the whole segmentor (frozen ViT included). `export_adapter` writes just the
adapter (``adapter_model.safetensors`` + ``adapter_config.json``), which `umgkit.adapters.load_adapter`
re-applies to a plain ``create_backbone(...)``; the decode head and the pyramid are not part of it.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from .backbone import UMGKitBackbone

__all__ = ["export_adapter", "export_adapter_from_checkpoint"]


def _find(model: nn.Module) -> UMGKitBackbone:
    found = [m for m in model.modules() if isinstance(m, UMGKitBackbone)]
    if not found:
        raise ValueError("export_adapter: the model has no UMGKitBackbone; build it from an mmseg config "
                         "whose model.backbone.type is 'UMGKitBackbone'.")
    return found[0]


def export_adapter(model: nn.Module, directory: str | os.PathLike) -> Path:
    """Write the adapter of the `UMGKitBackbone` inside ``model`` (a segmentor or the backbone itself)."""
    return _find(model).umgkit.export_adapter(directory)


def export_adapter_from_checkpoint(model: nn.Module, checkpoint: str | os.PathLike,
                                   directory: str | os.PathLike) -> Path:
    """Load an mmseg checkpoint's ``state_dict`` into ``model`` (built from the run's config), then export.

    The file is read with ``weights_only=True`` (mmengine's own loader unpickles, and fails on
    torch >= 2.6); only the backbone's adapter tensors need to be present.
    """
    state = torch.load(str(checkpoint), map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    bridge = _find(model)
    prefix = next((n + "." for n, m in model.named_modules() if m is bridge), "")
    own = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    missing = [n for n, _ in bridge.named_parameters() if bridge.adapter.owns(n[len("umgkit.backbone."):])
               and n not in own]
    if missing:
        raise ValueError(f"{checkpoint} lacks adapter tensors {missing[:5]}; was it saved from a model built "
                         "with the same UMGKitBackbone options?")
    bridge.load_state_dict(own, strict=False)
    return export_adapter(model, directory)
