"""Weights of other projects as umg state dicts: open_clip CLIP files (both towers), timm ViTs (image tower).

`read_state_dict` reads ``.safetensors`` (or ``.bin`` / ``.pt`` / ``.pth`` through
``torch.load(weights_only=True)``), unwrapping ``{"state_dict": ...}`` / ``{"model": ...}`` and a DDP
``module.`` prefix. `weights_format` tells the three layouts apart by their keys; `to_umg` renames them
into umg's keys:

- open_clip (native ViT CLIP: ``visual.conv1``, ``visual.transformer.resblocks.N``, ``ln_final`` ...): every
  umg weight is given. Its ``ln_pre`` becomes ``visual.norm_pre`` (the caller switches ``pre_norm`` on),
  the projection matrices ``(W, D)`` are transposed into ``Linear`` weights, and the bias-free patch conv
  gets a zero bias. A SigLIP ``logit_bias`` and the non-weight ``attn_mask`` buffer are dropped.
- timm ``VisionTransformer`` with a class token (``patch_embed.proj``, ``blocks.N``, ``norm``): the image
  tower only; the text tower, ``visual.proj`` and ``logit_scale`` keep their fresh initialisation. The
  classifier ``head`` is dropped; a missing qkv bias becomes zeros.

Attention heads are not stored in weights: they come from the umg architecture (open_clip and timm
use 64-dim heads for ViT-B/16 and ViT-L/14, as ``umg:base16`` and ``umg:large14`` do). Features umg
does not have (layer scale, register tokens, attention pooling, average pooling) raise instead of
loading into a model that would compute something else.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from .._tensors import read_safetensors, read_torch_file
from ..errors import WeightsError

__all__ = ["FORMATS", "read_state_dict", "weights_format", "to_umg", "TIMM_KEPT_FRESH"]

FORMATS = ("umg", "open_clip", "timm")
TIMM_KEPT_FRESH = ("text.", "visual.proj.weight", "logit_scale")  # what a timm file does not provide

_BLOCK_PARTS = {"ln_1": "norm1", "ln_2": "norm2", "attn.in_proj_weight": "attn.qkv.weight",
                "attn.in_proj_bias": "attn.qkv.bias", "attn.out_proj": "attn.proj", "mlp.c_fc": "mlp.fc1",
                "mlp.c_proj": "mlp.fc2"}
_OPENCLIP_TOP = {"visual.ln_pre": "visual.norm_pre", "visual.ln_post": "visual.norm",
                 "token_embedding": "text.token_embedding",
                 "positional_embedding": "text.positional_embedding", "ln_final": "text.norm",
                 "logit_scale": "logit_scale"}
_OPENCLIP_RESHAPED = ("visual.conv1.weight", "visual.class_embedding", "visual.positional_embedding",
                      "visual.proj", "text_projection", "text_projection.weight")
_TIMM_BLOCK = re.compile(r"blocks\.(\d+)\.(norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)"
                         r"\.(weight|bias)$")
_TIMM_TOP = {"patch_embed.proj.weight": "visual.patch_embed.weight",
             "patch_embed.proj.bias": "visual.patch_embed.bias", "cls_token": "visual.cls_token",
             "pos_embed": "visual.pos_embed", "norm_pre.weight": "visual.norm_pre.weight",
             "norm_pre.bias": "visual.norm_pre.bias", "norm.weight": "visual.norm.weight",
             "norm.bias": "visual.norm.bias"}


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a weights file, never unpickling arbitrary objects."""
    p = Path(path)
    fix = "Give an existing .safetensors, .bin, .pt or .pth file of model weights."
    if p.suffix == ".safetensors":
        state = read_safetensors(p, fix=fix)
    elif p.suffix in (".bin", ".pt", ".pth"):
        state = read_torch_file(p, fix=fix)
        for key in ("state_dict", "model"):  # training checkpoints wrap the weights
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
    else:
        raise WeightsError(f"weights file {p}: unknown suffix {p.suffix!r}; use .safetensors, .bin, .pt or "
                           ".pth.")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"weights file {p} does not hold a state dict (name -> tensor).")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def weights_format(state: dict[str, torch.Tensor]) -> str | None:
    """``"umg"``, ``"open_clip"``, ``"timm"``, or None when the keys match none of them."""
    if "visual.patch_embed.weight" in state or any(k.startswith("visual.patch_embed.") for k in state):
        return "umg"
    if "visual.conv1.weight" in state and "visual.class_embedding" in state:
        return "open_clip"
    if "patch_embed.proj.weight" in state and "pos_embed" in state:
        return "timm"
    return None


def to_umg(state: dict[str, torch.Tensor], fmt: str) -> dict[str, torch.Tensor]:
    """``state`` (in layout ``fmt``) renamed and reshaped into umg's keys."""
    if fmt == "umg":
        return dict(state)
    if fmt == "open_clip":
        return _from_openclip(state)
    if fmt == "timm":
        return _from_timm(state)
    raise WeightsError(f"unknown weights format {fmt!r}; known: {FORMATS}.")


def _unsupported(fmt: str, keys: list[str]) -> WeightsError:
    return WeightsError(f"{fmt} weights hold parts umg models do not have: {sorted(keys)[:6]} ({len(keys)} "
                      "keys; e.g. layer scale, register tokens, attention or average pooling). Use a plain "
                      "class-token ViT checkpoint, or the openclip: / timm: backbone for this one.")


def _from_openclip(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    left = []
    for key, value in state.items():
        if key in _OPENCLIP_RESHAPED or key in ("attn_mask", "logit_bias") or key.endswith(".attn_mask"):
            continue
        new = _openclip_key(key)
        if new is None:
            left.append(key)
        else:
            out[new] = value
    if left:
        raise _unsupported("open_clip", left)
    conv = state["visual.conv1.weight"]
    out["visual.patch_embed.weight"] = conv
    out["visual.patch_embed.bias"] = conv.new_zeros(conv.shape[0])  # open_clip's patch conv has no bias
    out["visual.cls_token"] = state["visual.class_embedding"].reshape(1, 1, -1)
    out["visual.pos_embed"] = state["visual.positional_embedding"].unsqueeze(0)
    out["visual.proj.weight"] = state["visual.proj"].t().contiguous()
    proj = state.get("text_projection")
    if proj is None:
        proj = state.get("text_projection.weight")  # Linear form (D, W) already
    elif proj.dim() == 2:
        proj = proj.t().contiguous()
    if proj is None:
        raise WeightsError("open_clip weights without a text_projection; umg needs both towers projected.")
    out["text.proj.weight"] = proj
    return out


def _openclip_key(key: str) -> str | None:
    """umg name of an open_clip key that only needs renaming, or None when umg has no such weight."""
    for tower, prefix in (("visual.blocks.", "visual.transformer.resblocks."),
                          ("text.blocks.", "transformer.resblocks.")):
        if key.startswith(prefix):
            index, _, rest = key[len(prefix):].partition(".")
            for part, mapped in _BLOCK_PARTS.items():
                if rest == part or rest.startswith(part + "."):
                    return f"{tower}{index}.{mapped}{rest[len(part):]}"
            return None
    for part, mapped in _OPENCLIP_TOP.items():
        if key == part or key.startswith(part + "."):
            return mapped + key[len(part):]
    return None


def _from_timm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    left = []
    for key, value in state.items():
        if key.startswith("head.") or key.startswith("head_drop."):
            continue  # the classifier; umg projects into the joint space instead
        m = _TIMM_BLOCK.match(key)
        if m:
            out[f"visual.blocks.{m.group(1)}.{m.group(2)}.{m.group(3)}"] = value
        elif key in _TIMM_TOP:
            out[_TIMM_TOP[key]] = value
        else:
            left.append(key)
    if left:
        raise _unsupported("timm", left)
    if "visual.cls_token" not in out:
        raise WeightsError("timm weights without a class token (class_token=False); umg pools its class "
                           "token.")
    weight = out["visual.patch_embed.weight"]
    out.setdefault("visual.patch_embed.bias", weight.new_zeros(weight.shape[0]))
    for key in [k for k in out if k.endswith("attn.qkv.weight")]:  # timm's qkv_bias=False models
        out.setdefault(key[: -len("weight")] + "bias", out[key].new_zeros(out[key].shape[0]))
    return out
