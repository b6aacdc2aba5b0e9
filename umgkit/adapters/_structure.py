"""Find transformer blocks structurally, so every adapter works on any backbone wrapper.

Adapters never hard-code a path such as ``model.visual.transformer``: a umgkit Backbone may hold its ViT
under any attribute. Instead we search the module tree for block lists (an ``nn.ModuleList`` or
``nn.Sequential`` named ``blocks`` or ``resblocks``) whose children all have one of two known layouts:

- ``"timm"`` (timm ViTs and umgkit's own ``umg`` ViT): ``norm1, attn.qkv, attn.proj, norm2, mlp.fc1,
  mlp.fc2``; tokens are batch-first ``(B, prefix + N, C)``.
- ``"open_clip"``: ``ln_1, attn`` (an ``nn.MultiheadAttention``), ``ln_2, mlp.c_fc, mlp.c_proj``; the token
  layout follows ``attn.batch_first`` (``(B, L, C)`` when true, ``(L, B, C)`` otherwise).
- ``"hf"`` (transformers CLIP / SigLIP encoder layers, in a list named ``layers``): ``layer_norm1,
  self_attn.{q,k,v,out}_proj, layer_norm2, mlp.fc1, mlp.fc2``; batch-first.
- ``"convnext"`` (timm ConvNeXt blocks, one ``blocks`` list per stage): ``conv_dw, norm, mlp.fc1, mlp.fc2``;
  no attention and no tokens (channels-last maps inside the MLP).
- ``"resnet"`` (timm ResNets and open_clip's ModifiedResNet, one ``layerN`` list per stage): ``conv1,
  bn1, conv2, bn2[, conv3, bn3]``; convolutions only.

The style tells where tokens and widths are; which layer plays which role inside a block (fused or
separate q/k/v, the MLP's layers) is read from the block itself by `umgkit.adapters._layout`.

Each block list belongs to a *tower*: ``"vision"`` or ``"text"`` (see `_tower_of`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import nn

from ..errors import ConfigError
from ._layout import BlockLayout, block_layout, has_attention_projections, unwrapped

__all__ = ["BlockList", "find_block_lists", "select_blocks", "block_targets", "get_submodule",
           "set_submodule", "block_width", "unwrapped", "TOWERS", "BlockLayout", "block_layout"]

TOWERS = ("vision", "text", "all")
_LIST_NAMES = ("blocks", "resblocks", "layers")
_STAGE_NAME = re.compile(r"layer\d+")  # ResNet stages: layer1 .. layer4
_VISION_WORDS = {"visual", "vision", "vision_model", "vision_tower", "image_encoder", "trunk", "image"}
_TEXT_WORDS = {"text", "textual", "text_model", "text_encoder", "text_tower"}


@dataclass(frozen=True)
class BlockList:
    """One stack of transformer blocks: where it is, its layout and its tower."""

    path: str  # dotted path of the list inside the model ("" components joined by ".")
    style: str  # "timm", "open_clip", "hf", "convnext" or "resnet"
    tower: str  # "vision" or "text"
    length: int

    def block_path(self, index: int) -> str:
        return f"{self.path}.{index}" if self.path else str(index)


def _style_of(block: nn.Module) -> str | None:
    if all(hasattr(block, a) for a in ("norm1", "attn", "norm2", "mlp")) and has_attention_projections(
            block.attn):
        return "timm"
    if all(hasattr(block, a) for a in ("ln_1", "attn", "ln_2", "mlp")) and isinstance(
            unwrapped(block.attn), nn.MultiheadAttention):
        return "open_clip"
    if all(hasattr(block, a) for a in ("layer_norm1", "self_attn", "layer_norm2", "mlp")) and all(
            hasattr(unwrapped(block.self_attn), p) for p in ("q_proj", "k_proj", "v_proj", "out_proj")):
        return "hf"
    if all(hasattr(block, a) for a in ("conv_dw", "norm", "mlp")) and hasattr(block.mlp, "fc1"):
        return "convnext"
    children = [unwrapped(c) for c in block.children()]
    if sum(isinstance(c, nn.Conv2d) for c in children) >= 2 and any(
            isinstance(c, nn.BatchNorm2d) for c in children):
        return "resnet"
    # A block already wrapped by an adapter (VPT) keeps its layout under ``base_layer``.
    base = getattr(block, "base_layer", None)
    return _style_of(base) if isinstance(base, nn.Module) else None


def _tower_of(path: str, all_paths: Sequence[str]) -> str:
    """Vision if a path component names an image tower; text if one names a text tower; otherwise a list
    is vision unless another list in the model is explicitly vision (open_clip's top-level
    ``transformer.resblocks`` next to ``visual.transformer.resblocks`` is the text tower)."""
    parts = set(path.split("."))
    if parts & _VISION_WORDS:
        return "vision"
    if parts & _TEXT_WORDS:
        return "text"
    others_vision = any(set(p.split(".")) & _VISION_WORDS for p in all_paths if p != path)
    return "text" if others_vision else "vision"


def find_block_lists(model: nn.Module) -> list[BlockList]:
    """Every block list in ``model`` in module order; empty when none has a known layout."""
    found: list[tuple[str, str, int]] = []
    for path, module in model.named_modules():
        name = path.rsplit(".", 1)[-1]
        listed = name in _LIST_NAMES or _STAGE_NAME.fullmatch(name)
        if not listed or not isinstance(module, (nn.ModuleList, nn.Sequential)):
            continue
        styles = {_style_of(b) for b in module}
        if len(module) and len(styles) == 1 and None not in styles:
            found.append((path, styles.pop(), len(module)))
    paths = [p for p, _, _ in found]
    return [BlockList(p, s, _tower_of(p, paths), n) for p, s, n in found]


def select_blocks(model: nn.Module, tower: str = "vision",
                  layers: Sequence[int] | None = None) -> list[tuple[str, nn.Module, BlockList]]:
    """``(dotted block path, block, its list)`` for the chosen tower and layer indices.

    ``layers`` indexes blocks within each selected list (negative counts from the end); None means all.
    Raises a ValueError naming what was found when nothing matches, so a wrong backbone fails loudly.
    """
    if tower not in TOWERS:
        raise ConfigError(f"tower={tower!r} is not valid; choose one of {', '.join(TOWERS)}.")
    lists = find_block_lists(model)
    if not lists:
        raise ConfigError(
            f"No transformer blocks found in {type(model).__name__}: umgkit adapters support timm / umg "
            "ViTs (a `blocks` list with norm1/attn.qkv/mlp.fc1), open_clip transformers (a `resblocks` "
            "list with ln_1/attn=nn.MultiheadAttention/mlp.c_fc) and transformers CLIP / SigLIP (a `layers` "
            "list with layer_norm1/self_attn.q_proj/mlp.fc1), ConvNeXt stages and ResNet stages (`layerN` "
            "lists of conv1/bn1/conv2/bn2 blocks).")
    chosen = [bl for bl in lists if tower == "all" or bl.tower == tower]
    if not chosen:
        have = ", ".join(f"{bl.path} ({bl.tower})" for bl in lists)
        raise ConfigError(f"No {tower} tower in {type(model).__name__}; block lists found: {have}.")
    out = []
    for bl in chosen:
        container = get_submodule(model, bl.path)
        indices = range(bl.length) if layers is None else _normalise_layers(layers, bl)
        out.extend((bl.block_path(i), container[i], bl) for i in indices)
    return out


def _normalise_layers(layers: Sequence[int], bl: BlockList) -> list[int]:
    result = []
    for i in layers:
        j = i + bl.length if i < 0 else i
        if not 0 <= j < bl.length:
            raise ConfigError(f"layers contains {i}, but {bl.path} has {bl.length} blocks "
                              f"(valid: 0..{bl.length - 1} or negative from the end).")
        result.append(j)
    return sorted(set(result))


def block_width(block: nn.Module, style: str) -> int:
    """Token width C of a block (its first norm's size); ResNet blocks have no token width."""
    if style == "resnet":
        raise ConfigError("a ResNet block has no token width (it holds convolutions only).")
    norm = {"timm": "norm1", "open_clip": "ln_1", "hf": "layer_norm1", "convnext": "norm"}[style]
    norm = getattr(block, norm)
    return int(norm.normalized_shape[0])


def get_submodule(root: nn.Module, path: str) -> nn.Module:
    """``root.get_submodule`` that treats "" as the root itself and reports the missing part."""
    module = root
    for part in filter(None, path.split(".")):
        if not hasattr(module, part) or not isinstance(getattr(module, part), nn.Module):
            children = ", ".join(n for n, _ in module.named_children()) or "(none)"
            raise ConfigError(f"'{path}' not found: {type(module).__name__} has no submodule '{part}' "
                              f"(its children: {children}).")
        module = getattr(module, part)
    return module


def set_submodule(root: nn.Module, path: str, new: nn.Module) -> None:
    """Replace the module at dotted ``path`` (works for ModuleList / Sequential indices too)."""
    parent_path, _, name = path.rpartition(".")
    parent = get_submodule(root, parent_path)
    if isinstance(parent, (nn.ModuleList, nn.Sequential)) and name.isdigit():
        parent[int(name)] = new
    else:
        setattr(parent, name, new)


def block_targets(model: nn.Module, tower: str, layers: Sequence[int] | None,
                  targets: Sequence[str] | None, defaults: Callable[[str, BlockLayout], Sequence[str]]
                  ) -> list[tuple[str, nn.Module, str]]:
    """``(dotted path, module, block style)`` for each block-relative target in each selected block.

    ``targets`` are paths inside a block (``"attn.qkv"``, ``"mlp.c_fc"``); None asks
    ``defaults(block path, layout)`` for the method's default, read from each block's own layout (which
    raises a ConfigError naming alternatives where the method has nothing to act on).
    """
    out = []
    for path, block, bl in select_blocks(model, tower, layers):
        names = targets if targets is not None else defaults(path, block_layout(block))
        for rel in names:
            module = get_submodule(block, rel)
            out.append((f"{path}.{rel}", module, bl.style))
    return out
