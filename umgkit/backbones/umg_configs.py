"""Architectures of umgkit's own dual encoder, as plain data (``umg:<name>`` picks one).

Each entry: ``embed_dim`` (joint space D), ``vision`` (image_size, patch_size, width, layers, heads,
mlp_dim, and optional keys: ``stem`` ``patch`` (default) or ``conv`` (`vit.ConvStem`), ``pool`` ``cls``
(default) or ``mean``, ``pre_norm`` false (default) or true) and ``text``
(context_length, vocab_size, width, layers, heads, mlp_dim). A checkpoint's ``config.json`` stores the
same dict, so ``umg:/path`` rebuilds the architecture it was saved with.
"""

from __future__ import annotations

from copy import deepcopy

__all__ = ["UMG_CONFIGS", "get_umg_config"]

_VOCAB = 49408  # open_clip's SimpleTokenizer vocabulary


def _cfg(embed_dim: int, image: int, patch: int, vw: int, vl: int, vh: int, tw: int, tl: int, th: int,
         context: int = 77, stem: str = "patch", pool: str = "cls") -> dict:
    vision = {"image_size": image, "patch_size": patch, "width": vw, "layers": vl, "heads": vh,
              "mlp_dim": 4 * vw}
    if stem != "patch":  # checkpoints without the key are patch-stem ones
        vision["stem"] = stem
    if pool != "cls":  # likewise class-token pooled
        vision["pool"] = pool
    return {
        "embed_dim": embed_dim,
        "vision": vision,
        "text": {"context_length": context, "vocab_size": _VOCAB, "width": tw, "layers": tl, "heads": th,
                 "mlp_dim": 4 * tw},
    }


UMG_CONFIGS: dict[str, dict] = {
    # test / demo size: runs in milliseconds on a CPU; a short context keeps the text tower cheap
    "tiny": _cfg(128, 64, 8, 128, 4, 4, 128, 4, 4, context=32),
    # tiny with a CNN stem and mean pooling: learns shapes from scratch within minutes (demo pretraining)
    "tiny_conv": _cfg(128, 64, 8, 128, 4, 4, 128, 4, 4, context=32, stem="conv", pool="mean"),
    "small": _cfg(384, 224, 16, 384, 12, 6, 384, 12, 6),
    "base16": _cfg(512, 224, 16, 768, 12, 12, 512, 12, 8),  # ViT-B/16 CLIP shapes
    "large14": _cfg(768, 224, 14, 1024, 24, 16, 768, 12, 12),  # ViT-L/14 CLIP shapes
}


def get_umg_config(name: str) -> dict:
    """A copy of the named architecture; raises listing the known names."""
    if name not in UMG_CONFIGS:
        raise KeyError(f"Unknown umg architecture '{name}'; known: {', '.join(UMG_CONFIGS)}, "
                       "or give a checkpoint path written by save_umg_checkpoint (umg:/path/to/dir).")
    return deepcopy(UMG_CONFIGS[name])
