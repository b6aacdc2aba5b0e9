"""ViTDet-style detection: simple feature pyramid + torchvision's RPN and RoI heads (Faster / Mask R-CNN).

``head(fmap, image_list, targets=None, original_sizes=None)`` takes the backbone's ``dense`` map
``(B, width, h, w)`` of the padded batch in ``image_list`` (`batch` builds it) and returns, in training,
torchvision's loss dict (``loss_objectness``, ``loss_rpn_box_reg``, ``loss_classifier``,
``loss_box_reg`` [, ``loss_mask``]); in eval, one dict per image with ``boxes`` ``(N, 4)`` absolute XYXY
pixels of ``original_sizes`` (default: the unpadded input sizes), ``scores`` ``(N,)``, ``labels``
``(N,)`` int64 in ``[0, K)`` [, ``masks`` ``(N, 1, H, W)`` probabilities]. Targets are per image
``{"boxes": (K_i, 4) XYXY, "labels": (K_i,) in [0, K) [, "masks": (K_i, H, W) uint8]}`` in the padded
batch's pixel frame; the +1 shift to torchvision's "0 = background" happens here.

The pyramid (``p2``-``p5``, strides 4-32, plus ``p6`` by stride-2 subsampling of ``p5`` when five anchor
sizes are given, as ViTDet / torchvision's FPN) is trainable and owned by the head, so adapters + head
are everything that trains. Classifiers: ``learned`` (torchvision's FastRCNNPredictor), ``open_vocab``
(RoI features projected to the joint space, cosine to class-name text embeddings, learned background)
and ``region_embed`` (the backbone's ``embed_regions`` of each proposal, cosine to the text embeddings);
see `umgkit.heads._rcnn_predictors`.
"""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import MultiScaleRoIAlign

from ..backbones.pyramid import SimpleFeaturePyramid
from ..errors import ConfigError
from ..registry import HEADS
from ._rcnn_predictors import (
    ClassAgnosticMask,
    RegionEmbedBoxHead,
    RegionEmbedPool,
    RegionEmbedPredictor,
    TextBoxPredictor,
    TextClassifier,
)
from .segmentation import DEFAULT_TEMPLATES, TextClassifierOptions, encode_class_names

__all__ = ["RCNNHead", "RCNNOptions", "RPNOptions", "RoIOptions", "build_vitdet_rcnn",
           "DETECTION_CLASSIFIERS"]

DETECTION_CLASSIFIERS = ("learned", "open_vocab", "region_embed")
_ROI_LEVELS = ["p2", "p3", "p4", "p5"]  # ViTDet pools RoIs from p2-p5; p6 only feeds the RPN


class RCNNHead(nn.Module):
    """Pyramid + RPN + RoI heads (+ mask branch); see the module docstring for shapes and options.

    ``text_encoder`` (``list[str] -> (N, D)``) and ``embed_regions`` are plain callables of the backbone
    (not submodules), needed only by the open-vocabulary classifiers.
    """

    def __init__(self, *, width: int, patch_size: int, num_classes: int | None = None,
                 class_names: Sequence[str] | None = None, classifier: str = "learned", masks: bool = False,
                 embed_dim: int | None = None, text_encoder: Callable | None = None,
                 embed_regions: Callable | None = None, templates: Sequence[str] = DEFAULT_TEMPLATES,
                 pyramid_channels: int = 256, anchor_sizes: Sequence[int] = (32, 64, 128, 256, 512),
                 aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0), representation_size: int = 1024,
                 mask_channels: int = 256, mask_layers: int = 4, rpn_batch_size: int = 256,
                 roi_batch_size: int = 512, rpn_pre_nms_top_n: Sequence[int] = (2000, 1000),
                 rpn_post_nms_top_n: Sequence[int] = (2000, 1000), score_thresh: float = 0.05,
                 nms_thresh: float = 0.5, detections_per_img: int = 100, sampling_ratio: int = 2,
                 size_divisible: int = 32, logit_scale: float = math.log(1 / 0.07), learn_scale: bool = True,
                 make_neck: Callable[[int], nn.Module] | None = None):
        super().__init__()
        if classifier not in DETECTION_CLASSIFIERS:
            raise ConfigError(f"head option classifier='{classifier}'; choose one of "
                              f"{DETECTION_CLASSIFIERS}.")
        if len(anchor_sizes) not in (4, 5):
            raise ConfigError(f"head option anchor_sizes={list(anchor_sizes)}: give 4 sizes (levels "
                              "p2-p5) or 5 (p2-p6), one per level, in pixels, e.g. [32, 64, 128, 256, 512].")
        self.classifier_kind, self.with_masks = classifier, bool(masks)
        self.size_divisible = int(size_divisible)
        self.templates = tuple(templates)
        self._text_encoder = text_encoder
        c = int(pyramid_channels)
        self.neck = (make_neck(c) if make_neck is not None else
                     SimpleFeaturePyramid(width=width, patch_size=patch_size, out_channels=c))
        self.levels = [*_ROI_LEVELS, "p6"][:len(anchor_sizes)]
        anchors = AnchorGenerator(sizes=tuple((int(s),) for s in anchor_sizes),
                                  aspect_ratios=(tuple(float(a) for a in aspect_ratios),) * len(anchor_sizes))
        self.rpn = RegionProposalNetwork(
            anchors, RPNHead(c, anchors.num_anchors_per_location()[0]), fg_iou_thresh=0.7, bg_iou_thresh=0.3,
            batch_size_per_image=int(rpn_batch_size), positive_fraction=0.5,
            pre_nms_top_n={"training": int(rpn_pre_nms_top_n[0]), "testing": int(rpn_pre_nms_top_n[1])},
            post_nms_top_n={"training": int(rpn_post_nms_top_n[0]), "testing": int(rpn_post_nms_top_n[1])},
            nms_thresh=0.7)
        box_pool = MultiScaleRoIAlign(featmap_names=_ROI_LEVELS, output_size=7,
                                      sampling_ratio=int(sampling_ratio))
        box_head = TwoMLPHead(c * 7 * 7, int(representation_size))
        self.class_names = list(class_names) if class_names is not None else None
        self.text_classifier: TextClassifier | None = None
        if classifier == "learned":
            if not num_classes:
                raise ValueError("classifier 'learned' needs num_classes (the task passes the dataset's).")
            box_predictor: nn.Module = FastRCNNPredictor(int(representation_size), int(num_classes) + 1)
        else:
            self.text_classifier = self._text_head(classifier, embed_dim, text_encoder, embed_regions,
                                                   logit_scale, learn_scale)
            if classifier == "open_vocab":
                box_predictor = TextBoxPredictor(int(representation_size), self.text_classifier)
            else:
                box_pool = RegionEmbedPool(box_pool, embed_regions)
                box_head = RegionEmbedBoxHead(box_head)
                box_predictor = RegionEmbedPredictor(int(representation_size), self.text_classifier)
        mask_parts = {}
        if self.with_masks:
            layers = (int(mask_channels),) * int(mask_layers)
            mask_out = (int(num_classes) + 1) if classifier == "learned" else 1
            predictor = MaskRCNNPredictor(layers[-1], int(mask_channels), mask_out)
            if classifier != "learned":
                predictor = ClassAgnosticMask(predictor, lambda: self.num_classes)
            mask_parts = {"mask_roi_pool": MultiScaleRoIAlign(featmap_names=_ROI_LEVELS, output_size=14,
                                                              sampling_ratio=int(sampling_ratio)),
                          "mask_head": MaskRCNNHeads(c, layers, 1), "mask_predictor": predictor}
        self.roi_heads = RoIHeads(box_pool, box_head, box_predictor, fg_iou_thresh=0.5, bg_iou_thresh=0.5,
                                  batch_size_per_image=int(roi_batch_size), positive_fraction=0.25,
                                  bbox_reg_weights=None, score_thresh=float(score_thresh),
                                  nms_thresh=float(nms_thresh), detections_per_img=int(detections_per_img),
                                  **mask_parts)
        # used only for padding a batch and mapping detections back (no resizing, no normalising)
        self.transform = GeneralizedRCNNTransform(min_size=1, max_size=1, image_mean=[0.0] * 3,
                                                  image_std=[1.0] * 3)
        if self.text_classifier is not None:
            if self.class_names is None:
                raise ValueError(f"classifier '{classifier}' needs class_names (the task passes the "
                                 "dataset's).")
            self.set_class_names(self.class_names)

    def _text_head(self, classifier, embed_dim, text_encoder, embed_regions, logit_scale, learn_scale):
        if not embed_dim or text_encoder is None or (classifier == "region_embed" and embed_regions is None):
            raise ConfigError(f"classifier '{classifier}' needs a backbone with a joint image-text space "
                              "and a text tower (embed_dim, encode_text, embed_regions); pick e.g. "
                              "umg:tiny or openclip:ViT-B-16, or use head option classifier=learned.")
        if not self.templates or any("{}" not in t for t in self.templates):
            raise ConfigError(f"templates {list(self.templates)}: each needs a '{{}}' for the class name.")
        return TextClassifier(int(embed_dim), logit_scale=logit_scale, learn_scale=learn_scale)

    # ---------------------------------------------------------------------------------- class set
    @property
    def num_classes(self) -> int:
        if self.text_classifier is None:
            return self.roi_heads.box_predictor.cls_score.out_features - 1
        return self.text_classifier.num_classes

    def set_class_names(self, names: Sequence[str]) -> None:
        """Open-vocabulary classifiers only: re-encode the class set (K becomes ``len(names)``)."""
        if self.text_classifier is None:
            raise ValueError("set_class_names needs head option classifier=open_vocab or region_embed; a "
                             "learned classifier has a fixed class set.")
        if not names:
            raise ValueError("set_class_names: give at least one class name.")
        device = self.text_classifier.background.device
        emb = encode_class_names(self._text_encoder, list(names), self.templates)  # (K, D)
        self.text_classifier.text_embeddings = emb.to(device)
        self.class_names = list(names)

    # ---------------------------------------------------------------------------------- forward
    def batch(self, images: torch.Tensor | Sequence[torch.Tensor]) -> ImageList:
        """Images ``(B, 3, H, W)`` or a list of ``(3, H_i, W_i)`` -> zero-padded batch (bottom / right) with
        sides divisible by ``size_divisible``, plus the unpadded sizes."""
        images = list(images)
        sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
        return ImageList(self.transform.batch_images(images, self.size_divisible), sizes)

    def features(self, fmap: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        """``(B, width, h, w)`` -> ``{"p2": (B, C, H/4, W/4), ..., ["p6": (B, C, H/64, W/64)]}``."""
        feats = OrderedDict(self.neck(fmap))
        if "p6" in self.levels:
            feats["p6"] = F.max_pool2d(feats["p5"], kernel_size=1, stride=2)
        return feats

    def forward(self, fmap: torch.Tensor, image_list: ImageList, targets: list[dict] | None = None,
                original_sizes: Sequence[tuple[int, int]] | None = None):
        if self.training and targets is None:
            raise ValueError("RCNNHead in training mode needs targets (boxes + labels per image).")
        if targets is not None:
            targets = [{**t, "labels": t["labels"] + 1} for t in targets]  # 0 = background in torchvision
        feats = self.features(fmap)
        proposals, rpn_losses = self.rpn(image_list, feats, targets)
        roi_feats = feats
        if self.classifier_kind == "region_embed":  # RegionEmbedPool reads the padded images
            roi_feats = {**feats, "image": image_list.tensors}
        detections, roi_losses = self.roi_heads(roi_feats, proposals, image_list.image_sizes, targets)
        if self.training:
            return {**rpn_losses, **roi_losses}
        sizes = list(original_sizes) if original_sizes is not None else image_list.image_sizes
        detections = self.transform.postprocess(detections, image_list.image_sizes, sizes)
        for det in detections:
            det["labels"] = det["labels"] - 1
        return detections


@dataclass
class RPNOptions:
    """Anchors and proposals (torchvision's RegionProposalNetwork)."""

    anchor_sizes: tuple[int, ...] = (32, 64, 128, 256, 512)  # pixels, one per level: 4 (p2-p5) or 5 (p2-p6)
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)  # anchor height / width ratios at every level
    rpn_batch_size: int = 256  # anchors sampled per image for the RPN losses
    rpn_pre_nms_top_n: tuple[int, int] = (2000, 1000)  # proposals kept before NMS, [train, test]
    rpn_post_nms_top_n: tuple[int, int] = (2000, 1000)  # proposals kept after NMS, [train, test]


@dataclass
class RoIOptions:
    """Box and mask branches on the proposals (torchvision's RoIHeads)."""

    representation_size: int = 1024  # width of the two-layer box head
    roi_batch_size: int = 512  # proposals sampled per image for the box losses
    sampling_ratio: int = 2  # RoIAlign samples per bin side (2, as torchvision's R-CNNs)
    score_thresh: float = 0.05  # detections scoring lower are dropped
    nms_thresh: float = 0.5  # IoU of the per-class NMS on the detections
    detections_per_img: int = 100  # most detections kept per image
    mask_channels: int = 256  # channels of the mask branch (task_options.masks adds it)
    mask_layers: int = 4  # 3x3 convs of the mask branch


@dataclass
class RCNNOptions(RoIOptions, RPNOptions, TextClassifierOptions):
    """Every option of `build_vitdet_rcnn`: the classifier's, the RPN's and the RoI heads'."""

    classifier: str = "learned"  # "learned", "open_vocab" (RoI features) or "region_embed" (embed_regions)
    pyramid_channels: int = 256  # channels of the learned simple feature pyramid (p2-p6)
    size_divisible: int = 32  # a batch is zero-padded to sides divisible by this


@HEADS.register("vitdet_rcnn", tasks=("detection",), options=RCNNOptions)
def build_vitdet_rcnn(backbone: nn.Module, num_classes: int | None = None,
                      class_names: Sequence[str] | None = None, masks: bool = False,
                      options: RCNNOptions | None = None) -> RCNNHead:
    """ViTDet Faster R-CNN (``masks=True``: Mask R-CNN) on a learned simple feature pyramid.

    The task passes ``num_classes``, ``class_names`` and ``masks`` (``task_options.masks``);
    ``model.head_options`` become ``options``.

    Example:
        >>> from umgkit.backbones import create_backbone
        >>> bb = create_backbone("umg:tiny")
        >>> small = RCNNOptions(pyramid_channels=32, anchor_sizes=(8, 16, 32, 64), representation_size=64)
        >>> head = build_vitdet_rcnn(bb, num_classes=3, options=small).eval()
        >>> batch = head.batch(torch.zeros(1, 3, 64, 64))
        >>> sorted(head(bb.dense(batch.tensors), batch)[0])
        ['boxes', 'labels', 'scores']
    """
    options = options or RCNNOptions()
    has_text = getattr(backbone, "has_text", False)
    open_vocab = options.classifier != "learned" and has_text
    return RCNNHead(width=backbone.width, patch_size=backbone.patch_size, num_classes=num_classes,
                    class_names=class_names, masks=masks, embed_dim=getattr(backbone, "embed_dim", None),
                    text_encoder=backbone.encode_text if open_vocab else None,
                    embed_regions=backbone.embed_regions if open_vocab else None,
                    make_neck=getattr(backbone, "make_neck", None), **dataclasses.asdict(options))
