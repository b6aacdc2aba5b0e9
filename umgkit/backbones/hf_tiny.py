"""Tiny random transformers CLIP / SigLIP folders, so ``hf:`` runs (tests, docs examples) without a download.

`save_tiny_hf` writes what ``CLIPModel.save_pretrained`` / ``SiglipModel.save_pretrained`` write, plus a
word-level tokenizer (a ``tokenizers`` model saved by ``PreTrainedTokenizerFast.save_pretrained``) over a
small vocabulary, so both towers load through ``hf:<folder>`` exactly as a downloaded checkpoint does.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

__all__ = ["save_tiny_hf", "TINY_VOCABULARY"]

TINY_VOCABULARY = ("[PAD]", "[UNK]", "a", "an", "photo", "of", "the", "red", "green", "blue", "circle",
                   "square", "triangle", "star", "ring", "cross", "diamond", "hexagon", "background", "[EOS]")


def save_tiny_hf(folder: str | os.PathLike, kind: str = "clip", *, seed: int = 0, width: int = 32,
                 layers: int = 2, image_size: int = 32, patch_size: int = 8) -> Path:
    """Write a seeded random ``kind`` ("clip" or "siglip") model and its tokenizer into ``folder``."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import CLIPConfig, CLIPModel, PreTrainedTokenizerFast, SiglipConfig, SiglipModel

    tower = {"hidden_size": width, "intermediate_size": 2 * width, "num_hidden_layers": layers,
             "num_attention_heads": 2}
    eos = len(TINY_VOCABULARY) - 1  # CLIP's text tower pools the end-of-text token
    text = dict(tower, vocab_size=len(TINY_VOCABULARY), max_position_embeddings=16, pad_token_id=0,
                bos_token_id=None, eos_token_id=eos)
    vision = dict(tower, image_size=image_size, patch_size=patch_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if kind == "clip":
            model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=width // 2))
        elif kind == "siglip":
            model = SiglipModel(SiglipConfig(text_config=text, vision_config=vision))
        else:
            raise ValueError(f"kind={kind!r}: choose 'clip' or 'siglip'.")
    words = Tokenizer(models.WordLevel({w: i for i, w in enumerate(TINY_VOCABULARY)}, unk_token="[UNK]"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    words.post_processor = processors.TemplateProcessing(single="$A [EOS]", special_tokens=[("[EOS]", eos)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=words, pad_token="[PAD]", unk_token="[UNK]",
                                        eos_token="[EOS]")
    folder = Path(folder)
    model.eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
