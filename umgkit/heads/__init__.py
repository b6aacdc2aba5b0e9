"""Task decoders, registered in `umgkit.registry.HEADS` with the tasks they serve and their options."""

from .classification import (
    LinearHead,
    LinearOptions,
    TextInitHead,
    TextInitOptions,
    build_linear_head,
    build_text_init_head,
)
from .clip import CLIPHead, CLIPOptions, build_clip_head
from .clip_adapter import ClipAdapterHead, ClipAdapterOptions, build_clip_adapter
from .contrastive import ContrastiveHead, ContrastiveOptions, build_contrastive_head
from .detection import RCNNHead, RCNNOptions, build_vitdet_rcnn
from .lp_pp import LPPlusPlusHead, LPPlusPlusOptions, build_lp_pp
from .panoptic import Mask2FormerHead, Mask2FormerOptions, build_mask2former
from .segmentation import (
    SemanticHead,
    SemanticOptions,
    TextClassifierOptions,
    build_semantic_fpn,
    build_semantic_uper,
)
from .tip_adapter import TipAdapterHead, TipAdapterOptions, build_tip_adapter, build_tip_adapter_f
from .zeroshot import PixelTextHead, PixelTextOptions, build_pixel_text_head

__all__ = ["SemanticHead", "SemanticOptions", "TextClassifierOptions", "build_semantic_fpn",
           "build_semantic_uper",
           "LinearHead", "LinearOptions", "TextInitHead", "TextInitOptions", "build_linear_head",
           "build_text_init_head",
           "CLIPHead", "CLIPOptions", "build_clip_head",
           "TipAdapterHead", "TipAdapterOptions", "build_tip_adapter", "build_tip_adapter_f",
           "ClipAdapterHead", "ClipAdapterOptions", "build_clip_adapter",
           "LPPlusPlusHead", "LPPlusPlusOptions", "build_lp_pp",
           "ContrastiveHead", "ContrastiveOptions", "build_contrastive_head",
           "RCNNHead", "RCNNOptions", "build_vitdet_rcnn",
           "Mask2FormerHead", "Mask2FormerOptions", "build_mask2former",
           "PixelTextHead", "PixelTextOptions", "build_pixel_text_head"]
