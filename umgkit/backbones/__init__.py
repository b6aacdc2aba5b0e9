"""Frozen vision(-language) backbones behind one contract (DESIGN.md, "The backbone contract").

Importing this package registers the ``umg:``, ``openclip:``, ``timm:`` and ``hf:`` entries in
``BACKBONES``; open_clip, timm and transformers themselves are imported only when such a backbone is built.
"""

from . import hf_clip, openclip, timm_backbone, umg  # noqa: F401  (registration)
from .base import Backbone, NoJointSpaceError, NoTextTowerError, ShapeSpec
from .factory import create_backbone, list_backbones
from .hf_clip import HFCLIPBackbone
from .openclip import OpenCLIPBackbone
from .pyramid import LayerNorm2d, SimpleFeaturePyramid, parameter_free_pyramid
from .timm_backbone import TimmBackbone
from .umg import UMGBackbone, load_umg_checkpoint, save_umg_checkpoint
from .umg_configs import UMG_CONFIGS

__all__ = [
    "Backbone",
    "HFCLIPBackbone",
    "LayerNorm2d",
    "NoJointSpaceError",
    "NoTextTowerError",
    "OpenCLIPBackbone",
    "ShapeSpec",
    "SimpleFeaturePyramid",
    "TimmBackbone",
    "UMGBackbone",
    "UMG_CONFIGS",
    "create_backbone",
    "list_backbones",
    "load_umg_checkpoint",
    "parameter_free_pyramid",
    "save_umg_checkpoint",
]
