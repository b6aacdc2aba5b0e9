"""Detectron2 bridge: umgkit's frozen backbone + adapter as a detectron2 ``Backbone``.

Importing this package imports detectron2 (ImportError with install instructions when it is missing)
and registers ``build_umgkit_backbone`` in detectron2's ``BACKBONE_REGISTRY``. Typical use::

    from detectron2.config import get_cfg
    from umgkit.integrations.d2 import add_umgkit_config
    cfg = get_cfg()
    add_umgkit_config(cfg)
    cfg.merge_from_file("configs/detectron2/mask_rcnn_vitdet_umg.yaml")

or, from a shell, ``umgkit d2-train configs/detectron2/mask_rcnn_vitdet_umg.yaml KEY VALUE ...``.
"""

from .._availability import require

require("detectron2")

from .backbone import UMGKitBackbone, build_umgkit_backbone  # noqa: E402  (registration)
from .checkpoint import TrainableCheckpointer, load_trainable_weights  # noqa: E402
from .config import add_umgkit_config  # noqa: E402
from .train import UMGKitTrainer, register_coco_root, setup_cfg  # noqa: E402

__all__ = [
    "TrainableCheckpointer",
    "UMGKitBackbone",
    "UMGKitTrainer",
    "add_umgkit_config",
    "build_umgkit_backbone",
    "load_trainable_weights",
    "register_coco_root",
    "setup_cfg",
]
