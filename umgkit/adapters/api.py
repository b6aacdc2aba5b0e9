"""Apply, merge and count: the functions a training script calls around an `Adapter`."""

from __future__ import annotations

from typing import Any

from torch import nn

from ..registry import ADAPTERS
from ._base import Adapter

__all__ = ["apply_adapter", "merge_adapter", "parameter_report"]


def apply_adapter(model: nn.Module, name: str, **options: Any) -> Adapter:
    """Build the adapter ``name`` with ``options`` and apply it to ``model`` in place.

    Afterwards exactly the adapter's parameters are trainable (everything else is frozen). Heads you add
    later are yours to unfreeze.

    Example:
        >>> import timm
        >>> vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, depth=2)
        >>> adapter = apply_adapter(vit, "lora_qv", rank=4)
        >>> parameter_report(vit)["trainable"]  # 2 blocks * 4 * rank * width (192)
        6144
    """
    adapter = ADAPTERS.build(name, **options)
    adapter.apply(model)
    return adapter


def merge_adapter(model: nn.Module, adapter: Adapter) -> nn.Module:
    """Fold ``adapter`` into the frozen weights of ``model`` and remove its modules (in place).

    Outputs match the unmerged model up to float rounding. Raises NotImplementedError for methods whose
    computation is not a weight update (AdaptFormer, sequential adapters, VPT).
    """
    return adapter.merge(model)


def parameter_report(model: nn.Module) -> dict[str, Any]:
    """Exact parameter counts: ``{"trainable", "total", "percent", "modules": {top-level name: {...}}}``.

    Shared parameters are counted once (``named_parameters`` de-duplicates); ``percent`` is
    ``100 * trainable / total``.
    """
    modules: dict[str, dict[str, int]] = {}
    trainable = total = 0
    for name, param in model.named_parameters():
        top = name.split(".", 1)[0]
        entry = modules.setdefault(top, {"trainable": 0, "total": 0})
        n = param.numel()
        entry["total"] += n
        total += n
        if param.requires_grad:
            entry["trainable"] += n
            trainable += n
    percent = 100.0 * trainable / total if total else 0.0
    return {"trainable": trainable, "total": total, "percent": percent, "modules": modules}
