"""``hf:<model id or folder>`` — a Hugging Face transformers ``CLIPModel`` or ``SiglipModel`` as a backbone.

Both towers, all granularities. The folder is what ``model.save_pretrained`` (and, for text,
``tokenizer.save_pretrained``) wrote; a hub id is read from the Hugging Face cache when the hub is offline
(``HF_HUB_OFFLINE=1``), never retried.

Adapter targets: vision layers at ``model.vision_model.encoder.layers`` (also ``backbone.blocks``), text
layers at ``model.text_model.encoder.layers``; inside a layer ``layer_norm1``, ``self_attn.{q,k,v,out}_proj``
(separate projections), ``layer_norm2``, ``mlp.fc1``, ``mlp.fc2``.

Pooling and dense embeddings, per family:

- CLIP pools the class token (``post_layernorm``, ``visual_projection``); patch and region embeddings take
  each token through the same norm and projection (umgkit's default dense mode, see `Backbone`).
- SigLIP pools with a multi-head attention "MAP" head (a learned probe attends over all tokens, then a
  residual MLP). A token has no path through the probe's query, so patch and region embeddings use the
  head's *value path* (MaskCLIP-style): ``a = out_proj(v_proj(x))``, ``a + mlp(layernorm(a))``. That is
  exactly what the head returns for an image of one token, so every granularity shares its weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, WeightsError
from ..registry import BACKBONES
from ._pos_embed import resample_pos_embed
from .base import Backbone
from .weights import fetch_failure, fetch_reason, hub_offline

__all__ = ["HFCLIPBackbone", "build_hf", "SUPPORTED_MODEL_TYPES"]

SUPPORTED_MODEL_TYPES = ("clip", "siglip")
_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class HFCLIPBackbone(Backbone):
    """Wraps a transformers ``CLIPModel`` / ``SiglipModel`` (``model``) without copying it.

    ``source`` is where the tokenizer is loaded from, on the first `encode_text` (vision-only use needs
    none); ``image_mean`` / ``image_std`` come from the folder's ``preprocessor_config.json`` if any.
    """

    def __init__(self, model: nn.Module, *, name: str, source: str | None = None,
                 image_mean: tuple[float, ...] | None = None, image_std: tuple[float, ...] | None = None,
                 local_files_only: bool = False) -> None:
        kind = model.config.model_type
        if kind not in SUPPORTED_MODEL_TYPES:
            raise ConfigError(f"{name}: transformers model type '{kind}' is not supported; hf: takes "
                              f"{' or '.join(SUPPORTED_MODEL_TYPES)} checkpoints (CLIPModel, SiglipModel).")
        v = model.vision_model
        vc = model.config.vision_config
        self.is_siglip = kind == "siglip"
        if self.is_siglip and getattr(v, "head", None) is None:
            raise ConfigError(f"{name}: this SigLIP vision tower has no pooling head "
                              "(vision_use_head=False); hf: needs it for image embeddings.")
        embed_dim = vc.hidden_size if self.is_siglip else int(model.config.projection_dim)
        default_mean, default_std = ((0.5,) * 3, (0.5,) * 3) if self.is_siglip else (_CLIP_MEAN, _CLIP_STD)
        super().__init__(name=name, embed_dim=embed_dim, width=vc.hidden_size, patch_size=vc.patch_size,
                         num_layers=len(v.encoder.layers), has_text=True,
                         image_size=(vc.image_size, vc.image_size),
                         image_mean=image_mean or default_mean, image_std=image_std or default_std)
        self.model = model
        self.num_prefix_tokens = 0 if self.is_siglip else 1
        self._source, self._local_files_only, self._tokenizer = source, local_files_only, None
        self._native_grid = (vc.image_size // vc.patch_size,) * 2
        self._freeze()

    # ------------------------------------------------------------------------------------ vision hooks
    @property
    def blocks(self) -> nn.ModuleList:
        return self.model.vision_model.encoder.layers

    def _embed(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        v = self.model.vision_model
        emb = v.embeddings
        x = emb.patch_embedding(images.to(emb.patch_embedding.weight.dtype))  # (B, C, h, w)
        grid = (x.shape[2], x.shape[3])
        x = x.flatten(2).transpose(1, 2)
        if not self.is_siglip:
            cls = emb.class_embedding.to(x.dtype).reshape(1, 1, -1).expand(x.shape[0], -1, -1)
            x = torch.cat([cls, x], dim=1)
        pos = resample_pos_embed(emb.position_embedding.weight, self._native_grid, grid,
                                 self.num_prefix_tokens)
        x = x + pos.to(x.dtype).unsqueeze(0)
        return (x if self.is_siglip else v.pre_layrnorm(x)), grid

    def _run_block(self, block: nn.Module, x: torch.Tensor, extra: object = None) -> torch.Tensor:
        out = block(x, attention_mask=None)
        return out[0] if isinstance(out, tuple) else out

    def _run_block_masked(self, block: nn.Module, x: torch.Tensor, extra: object,
                          mask: torch.Tensor) -> torch.Tensor:
        out = block(x, attention_mask=mask[None, None])  # transformers: additive (B, 1, L, L)
        return out[0] if isinstance(out, tuple) else out

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.vision_model.post_layernorm(x)

    def _pool_image(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.is_siglip:
            return self.model.vision_model.head(self.final_norm(tokens))
        return self._project(self.final_norm(tokens[:, 0]))

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        if not self.is_siglip:
            return self.model.visual_projection(x)
        head = self.model.vision_model.head
        attn, c = head.attention, x.shape[-1]
        value = F.linear(x, attn.in_proj_weight[2 * c:], attn.in_proj_bias[2 * c:])
        a = attn.out_proj(value)
        return a + head.mlp(head.layernorm(a))

    # ---------------------------------------------------------------------------------------- text
    @property
    def tokenizer(self):
        if self._tokenizer is None:
            tokenizer = _load_tokenizer(self._source, self.name, self._local_files_only)
            vocab = int(self.model.config.text_config.vocab_size)
            if len(tokenizer) < min(100, vocab):  # transformers builds an empty one when no files exist
                raise WeightsError(f"{self.name}: the tokenizer found for {self._source} has "
                                   f"{len(tokenizer)} tokens, the text tower {vocab}; no tokenizer files are "
                                   "there. Save one beside the weights with "
                                   "tokenizer.save_pretrained(folder).")
            self._tokenizer = tokenizer
        return self._tokenizer

    @property
    def text_token_embedding(self) -> nn.Module:
        return self.model.text_model.embeddings.token_embedding

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        max_len = self.model.config.text_config.max_position_embeddings
        if self.is_siglip:  # SigLIP was trained on max-length padded ids, without an attention mask
            enc = self.tokenizer(texts, padding="max_length", truncation=True, max_length=max_len,
                                 return_tensors="pt")
            return {"input_ids": enc["input_ids"]}
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def _encode_text(self, texts: list[str]) -> torch.Tensor:
        device = self.model.text_model.embeddings.token_embedding.weight.device
        inputs = {k: v.to(device) for k, v in self.tokenize(texts).items()}
        out = self.model.get_text_features(**inputs)
        return getattr(out, "pooler_output", out)

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale


def _load_tokenizer(source: str | None, name: str, local_files_only: bool):
    """transformers' tokenizer for ``source``: a local folder's problem is reported as the folder's, a hub
    id's as the fetch's (offline only when that is why); the cause is kept."""
    from transformers import AutoTokenizer

    if source is None:
        raise ConfigError(f"{name} was built without a tokenizer source; give hf:<folder or model id>.")
    try:
        return AutoTokenizer.from_pretrained(source, local_files_only=local_files_only)
    except (OSError, ValueError) as err:
        first = next(iter(str(err).splitlines()), "") or type(err).__name__
        if Path(source).is_dir():
            raise WeightsError(f"{name}: the tokenizer files in folder {source} cannot be read ({first}). "
                               "Write them again beside the weights with tokenizer.save_pretrained(folder)."
                               ) from err
        failure = fetch_failure(err)
        why = fetch_reason(failure) if failure is not None else first
        raise WeightsError(f"{name}: no tokenizer could be loaded from {source} ({why}). Save one beside "
                           "the weights with tokenizer.save_pretrained(folder), or load the model once with "
                           "the network so it is cached.") from err


def _processor_stats(folder: Path) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    file = folder / "preprocessor_config.json"
    if not file.is_file():
        return None, None
    data = json.loads(file.read_text(encoding="utf-8"))
    mean, std = data.get("image_mean"), data.get("image_std")
    return (tuple(mean) if mean else None), (tuple(std) if std else None)


@BACKBONES.register("hf:", doc="Hugging Face transformers CLIP / SigLIP: hf:<folder of save_pretrained> or "
                               "hf:<hub id> (cache only when offline)")
def build_hf(name: str, pretrained: str | None = None) -> HFCLIPBackbone:
    """``transformers.AutoModel.from_pretrained(name)`` for a CLIP or SigLIP checkpoint, wrapped.

    ``name`` is a folder written by ``save_pretrained`` or a hub id; the weights are the checkpoint's own,
    so ``pretrained`` must stay empty.
    """
    from transformers import AutoConfig, AutoModel

    label = f"hf:{name}"
    if pretrained:
        raise ConfigError(f"{label} loads its own weights; drop model.pretrained={pretrained!r} (give the "
                          "folder or hub id in model.backbone).")
    folder = Path(name).expanduser()
    local = folder.is_dir()
    if not local and name.startswith(("/", "./", "../", "~")):
        raise WeightsError(f"{label}: folder {folder} does not exist; give a folder written by "
                           "model.save_pretrained (with tokenizer.save_pretrained beside it), or a hub id.")
    offline = local or hub_offline()
    source = str(folder) if local else name
    try:
        config = AutoConfig.from_pretrained(source, local_files_only=offline)
    except (OSError, ValueError) as err:
        failure = None if local else fetch_failure(err)
        why = f"it is not a folder here, and {fetch_reason(failure)}" if failure is not None \
            else str(err).splitlines()[0]
        raise WeightsError(f"{label}: cannot read a transformers config from {source}: {why}. Give a folder "
                           "written by model.save_pretrained, or a hub id with the network on.") from err
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        raise ConfigError(f"{label}: transformers model type '{config.model_type}' is not supported; hf: "
                          f"takes {' or '.join(SUPPORTED_MODEL_TYPES)} checkpoints (CLIPModel, SiglipModel).")
    try:
        model = AutoModel.from_pretrained(source, local_files_only=offline).eval()
    except (OSError, ValueError) as err:
        raise WeightsError(f"{label}: cannot load the weights from {source}: "
                           f"{str(err).splitlines()[0]}") from err
    mean, std = _processor_stats(folder) if local else (None, None)
    return HFCLIPBackbone(model, name=label, source=source, image_mean=mean, image_std=std,
                          local_files_only=offline)
