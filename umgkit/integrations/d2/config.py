"""`add_umgkit_config`: umgkit's keys in a detectron2 (yacs) config, with their defaults.

``MODEL.UMGKIT`` describes the backbone the bridge builds; ``UMGKIT`` holds launcher options.
Adapter and backbone options are open nodes, so any option of the chosen method can be written in YAML
(``ADAPTER_OPTIONS: {rank: 8}``); a command-line override needs the key to exist in the YAML first.
"""

from __future__ import annotations

from detectron2.config import CfgNode as CN

__all__ = ["add_umgkit_config"]


def add_umgkit_config(cfg: CN) -> CN:
    """Add umgkit's keys (in place, before ``merge_from_file``); returns ``cfg``. Idempotent."""
    if "UMGKIT" in cfg.MODEL:
        return cfg
    m = cfg.MODEL.UMGKIT = CN()
    m.BACKBONE = "umg:base16"  # registry string: umg:<arch|ckpt dir>, openclip:<model>, timm:<model>
    m.PRETRAINED = ""  # local weights file for the backbone ("" = the family's default / random init)
    m.BACKBONE_OPTIONS = CN(new_allowed=True)  # extra keyword arguments for create_backbone
    m.ADAPTER = "lora_qv"  # any name of `umgkit list adapters`; "frozen" trains the neck and heads only
    m.ADAPTER_OPTIONS = CN(new_allowed=True)  # the adapter's options, e.g. {rank: 8}
    m.OUT_CHANNELS = 256  # channels of every pyramid level (detectron2 FPN heads expect 256)
    m.OUT_FEATURES = ["p2", "p3", "p4", "p5", "p6"]  # p6 = stride-2 max-pool of p5, for the RPN
    m.SQUARE_PAD = 0  # >0: pad every batch to this square size (ViTDet's large-scale-jitter recipe)
    m.GRAD_CHECKPOINTING = False  # recompute backbone blocks in backward (adapters inside the trunk)

    u = cfg.UMGKIT = CN()
    # COCO-layout folder: a DATASETS name <split> reads <root>/annotations/instances_<split>.json
    u.COCO_ROOT = ""
    u.OPTIMIZER = "AdamW"  # "AdamW" (ViTDet) or "SGD" (detectron2's default)
    u.BETAS = (0.9, 0.999)  # AdamW betas
    u.KEEP_LAST = 0  # >0: keep only this many newest checkpoints/step_* folders (0 keeps all)
    return cfg
