"""Task decoders, registered in `umgkit.registry.HEADS`."""

from .classification import LinearHead, TextInitHead, build_linear_head, build_text_init_head
from .contrastive import ContrastiveHead, build_contrastive_head
from .detection import RCNNHead, build_vitdet_rcnn
from .panoptic import Mask2FormerHead, build_mask2former
from .segmentation import SemanticHead, build_semantic_fpn, build_semantic_uper
from .zeroshot import PixelTextHead, build_pixel_text_head

__all__ = ["SemanticHead", "build_semantic_fpn", "build_semantic_uper",
           "LinearHead", "TextInitHead", "build_linear_head", "build_text_init_head",
           "ContrastiveHead", "build_contrastive_head",
           "RCNNHead", "build_vitdet_rcnn",
           "Mask2FormerHead", "build_mask2former",
           "PixelTextHead", "build_pixel_text_head"]
