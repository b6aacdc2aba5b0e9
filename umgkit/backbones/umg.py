"""``umg:<arch-or-checkpoint>`` — umgkit's own dual encoder (ViT image tower + causal text tower).

Adapter targets: vision blocks at ``visual.blocks`` (also ``backbone.blocks``), text blocks at
``text.blocks``; inside a block ``norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2`` (timm layout).

Checkpoints are a directory with ``model.safetensors`` (the backbone's state dict) and ``config.json``
(``{"format": "umgkit.umg", "version": 1, "config": <architecture dict>}``); never pickles.
"""

from __future__ import annotations

import json
import math
import os
from copy import deepcopy
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from .._io import atomic_write, atomic_write_text
from ..errors import ConfigError, WeightsError, unknown_name
from ..registry import BACKBONES
from .base import Backbone
from .text import TextTransformer
from .umg_configs import UMG_CONFIGS, get_umg_config
from .umg_weights import TIMM_KEPT_FRESH, read_state_dict, to_umg, weights_format
from .vit import VisionTransformer, init_weights

__all__ = ["UMGBackbone", "save_umg_checkpoint", "load_umg_checkpoint", "build_umg", "umg_from_weights"]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
WEIGHTS_NAME, CONFIG_NAME = "model.safetensors", "config.json"
_FORMAT = "umgkit.umg"
QUICKGELU_SUFFIX = "-quickgelu"


class UMGBackbone(Backbone):
    """Dual encoder built from an architecture dict (see `umg_configs`); frozen after construction.

    ``logit_scale`` is a learnable log-temperature (CLIP's ``log(1/0.07)`` init) used by pretraining.
    """

    def __init__(self, config: dict, *, name: str = "umg", init: bool = True) -> None:
        v, t, d = config["vision"], config["text"], int(config["embed_dim"])
        super().__init__(name=name, embed_dim=d, width=v["width"], patch_size=v["patch_size"],
                         num_layers=v["layers"], has_text=True, image_size=(v["image_size"],) * 2,
                         image_mean=CLIP_MEAN, image_std=CLIP_STD)
        self.config = config
        act = config.get("act", "gelu")
        self.visual = VisionTransformer(**v, embed_dim=d, act=act)
        self.text = TextTransformer(**t, embed_dim=d, act=act)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        if init:  # skipped when a checkpoint overwrites every weight anyway
            init_weights(self.visual)
            init_weights(self.text)
        self._freeze()

    @property
    def blocks(self) -> nn.ModuleList:
        return self.visual.blocks

    def _embed(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        return self.visual.embed(images)

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual.norm(x)

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual.proj(x)

    def _pool_image(self, tokens: torch.Tensor) -> torch.Tensor:
        return self._project(self.final_norm(self.visual.pool_tokens(tokens[:, 0], tokens[:, 1:])))

    @property
    def text_token_embedding(self) -> nn.Module:
        return self.text.token_embedding

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        """``(B, context_length)`` int64 token ids."""
        return self.text.tokenize(texts)

    def _encode_text(self, texts: list[str]) -> torch.Tensor:
        ids = self.tokenize(texts).to(self.logit_scale.device)
        return self.text(ids)


def save_umg_checkpoint(model: UMGBackbone, directory: str | os.PathLike) -> Path:
    """Write ``model.safetensors`` + ``config.json`` into ``directory`` (created; files replaced atomically).

    Returns the directory; ``create_backbone(f"umg:{directory}")`` loads it back bit-exactly.
    """
    if not isinstance(model, UMGBackbone):
        raise TypeError(f"save_umg_checkpoint expects a UMGBackbone, got {type(model).__name__}.")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    meta = {"format": _FORMAT, "version": 1, "config": model.config}
    atomic_write(out / WEIGHTS_NAME, lambda p: save_file(state, p, metadata={"format": "pt"}))
    atomic_write_text(out / CONFIG_NAME, json.dumps(meta, indent=2) + "\n")
    return out



def load_umg_checkpoint(path: str | os.PathLike, *, name: str | None = None) -> UMGBackbone:
    """Load a checkpoint directory (or its ``model.safetensors`` / ``config.json``) written by
    `save_umg_checkpoint`; every key must match (strict)."""
    p = Path(path)
    directory = p if p.is_dir() else p.parent
    cfg_file, weights = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    if p.is_file() and p.suffix == ".safetensors":
        weights = p
    for f in (cfg_file, weights):
        if not f.is_file():
            raise FileNotFoundError(f"umg checkpoint {path}: missing {f.name} in {directory}; a umg "
                                    "checkpoint is a directory written by save_umg_checkpoint "
                                    f"({WEIGHTS_NAME} + {CONFIG_NAME}).")
    meta = json.loads(cfg_file.read_text())
    if meta.get("format") != _FORMAT or "config" not in meta:
        raise WeightsError(f"{cfg_file} is not a umg checkpoint config (expected format '{_FORMAT}').")
    return umg_from_weights(meta["config"], weights, name=name or f"umg:{path}")


def umg_from_weights(config: dict, file: str | os.PathLike, *, name: str) -> UMGBackbone:
    """Build architecture ``config`` and load ``file``: umg, open_clip or timm weights (`umg_weights`).

    Every given tensor must fit the architecture's shape; a timm file leaves the text tower, the image
    projection and the temperature freshly initialised, the other formats must give every weight.
    """
    path = Path(file)
    state = read_state_dict(path / WEIGHTS_NAME if path.is_dir() else path)
    fmt = weights_format(state)
    if fmt is None:
        raise WeightsError(f"{file}: keys like {sorted(state)[:3]} are neither umg, open_clip "
                           "(visual.conv1, visual.transformer.resblocks.N) nor timm ViT (patch_embed.proj, "
                           "blocks.N) weights.")
    state = to_umg(state, fmt)
    config = deepcopy(config)
    if "visual.norm_pre.weight" in state:
        config["vision"]["pre_norm"] = True
    model = UMGBackbone(config, name=name, init=fmt == "timm")
    expected = model.state_dict()
    for key, value in state.items():
        if key not in expected:
            raise WeightsError(f"{file} ({fmt}): {key} has no place in the umg architecture ({len(expected)} "
                               "weights); is the file a different model family?")
        if tuple(value.shape) != tuple(expected[key].shape):
            raise WeightsError(f"{file} ({fmt}): {key} has shape {tuple(value.shape)}, {name} expects "
                               f"{tuple(expected[key].shape)}; pick the umg architecture with the file's "
                               f"sizes ({', '.join(UMG_CONFIGS)}; umg:base16 is ViT-B/16, umg:large14 "
                               "ViT-L/14).")
    missing = [k for k in expected if k not in state
               and not (fmt == "timm" and k.startswith(TIMM_KEPT_FRESH))]
    if missing:
        raise WeightsError(f"{file} ({fmt}) lacks {len(missing)} weights of {name}, e.g. {missing[:4]}.")
    model.load_state_dict(state, strict=False)
    return model


@BACKBONES.register("umg:", doc="umgkit's dual encoder: umg:<tiny|tiny_conv|small|base16|large14>"
                                "[-quickgelu] or umg:/ckpt/dir")
def build_umg(name: str, pretrained: str | None = None) -> UMGBackbone:
    """``name`` is an architecture (random init, or ``pretrained`` = a umg / open_clip / timm weights file or
    a umg checkpoint dir) or a checkpoint path written by `save_umg_checkpoint`.

    An architecture name ending in ``-quickgelu`` uses QuickGELU MLPs, as open_clip's ``-quickgelu``
    models (OpenAI's CLIP weights) do.
    """
    arch = name.removesuffix(QUICKGELU_SUFFIX)
    if arch in UMG_CONFIGS:
        config = get_umg_config(arch)
        if arch != name:
            config["act"] = "quick_gelu"
        if pretrained:
            return umg_from_weights(config, pretrained, name=f"umg:{name}")
        return UMGBackbone(config, name=f"umg:{name}")
    if Path(name).exists():
        if pretrained:
            raise ConfigError(f"umg:{name} is a checkpoint already; drop pretrained={pretrained!r}.")
        return load_umg_checkpoint(name)
    raise unknown_name("umg architecture", name, UMG_CONFIGS,
                       f"Architectures: {', '.join(UMG_CONFIGS)} (optionally with {QUICKGELU_SUFFIX!r}), or "
                       "the path of a checkpoint folder written by save_umg_checkpoint.")
