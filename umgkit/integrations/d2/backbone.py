"""`UMGKitBackbone`: a detectron2 ``Backbone`` over `AdaptedPyramid` (frozen ViT + adapter + pyramid).

Outputs ``p2..p6`` (strides 4..64, ``MODEL.UMGKIT.OUT_CHANNELS`` channels each) as ViTDet's simple
feature pyramid does, so detectron2's RPN / ROI / panoptic heads are built from `output_shape` alone.
Pixel statistics: detectron2 normalises with ``MODEL.PIXEL_MEAN/STD`` in ``INPUT.FORMAT`` order; the
bridge converts that to the backbone's own normalisation exactly, so any values work (the shipped
configs use the backbone's, making the conversion a no-op).
"""

from __future__ import annotations

import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone

from .._common import AdaptedPyramid

__all__ = ["UMGKitBackbone", "build_umgkit_backbone"]


def _plain(node) -> dict:
    """An open yacs node -> a plain dict (nested nodes too) for keyword arguments."""
    return {k: _plain(v) if isinstance(v, dict) else v for k, v in dict(node).items()}


class UMGKitBackbone(Backbone):
    """``forward(images (B, 3, H, W)) -> {name: (B, C, H / stride, W / stride)}`` for ``out_features``.

    Trainable parameters: the adapter's (inside ``umgkit.backbone``) and the pyramid's (``umgkit.neck``).
    """

    def __init__(self, *, net: AdaptedPyramid, out_features: list[str], square_pad: int = 0) -> None:
        super().__init__()
        self.umgkit = net
        unknown = sorted(set(out_features) - set(net.strides))
        if unknown or not out_features:
            raise ValueError(f"MODEL.UMGKIT.OUT_FEATURES={out_features}: unknown {unknown}; choose a "
                             "non-empty subset of ['p2', 'p3', 'p4', 'p5', 'p6'].")
        self._out_features = list(out_features)
        self._out_feature_strides = {k: net.strides[k] for k in out_features}
        self._out_feature_channels = {k: net.out_channels for k in out_features}
        if square_pad and square_pad % net.size_divisibility:
            raise ValueError(f"MODEL.UMGKIT.SQUARE_PAD={square_pad} must be a multiple of the backbone's "
                             f"size divisibility {net.size_divisibility} (patch size and coarsest stride).")
        self._square_pad = int(square_pad)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.umgkit(x)
        return {k: feats[k] for k in self._out_features}

    @property
    def size_divisibility(self) -> int:
        return self.umgkit.size_divisibility

    @property
    def padding_constraints(self) -> dict[str, int]:
        return {"size_divisibility": self.umgkit.size_divisibility, "square_size": self._square_pad}

    def output_shape(self) -> dict[str, ShapeSpec]:
        return {k: ShapeSpec(channels=self._out_feature_channels[k], stride=self._out_feature_strides[k])
                for k in self._out_features}

    @property
    def adapter(self):
        return self.umgkit.adapter


@BACKBONE_REGISTRY.register()
def build_umgkit_backbone(cfg, input_shape: ShapeSpec) -> UMGKitBackbone:
    """detectron2 builder: reads ``MODEL.UMGKIT`` (see `add_umgkit_config`), ``INPUT.FORMAT`` and
    ``MODEL.PIXEL_MEAN/STD``."""
    if "UMGKIT" not in cfg.MODEL:
        raise KeyError("MODEL.UMGKIT is missing from the detectron2 config; call "
                       "umgkit.integrations.d2.add_umgkit_config(cfg) before merge_from_file.")
    if input_shape.channels != 3:
        raise ValueError(f"umgkit backbones take 3-channel images; the config gives {input_shape.channels} "
                         "(len(MODEL.PIXEL_MEAN)).")
    if cfg.INPUT.FORMAT not in ("RGB", "BGR"):
        raise ValueError(f"INPUT.FORMAT={cfg.INPUT.FORMAT!r}: umgkit backbones need 'RGB' or 'BGR'.")
    m = cfg.MODEL.UMGKIT
    out_features = list(m.OUT_FEATURES)
    net = AdaptedPyramid(backbone=m.BACKBONE, pretrained=m.PRETRAINED or None, adapter=m.ADAPTER,
                         adapter_options=_plain(m.ADAPTER_OPTIONS),
                         backbone_options=_plain(m.BACKBONE_OPTIONS),
                         out_channels=m.OUT_CHANNELS, with_p6="p6" in out_features,
                         pixel_mean=list(cfg.MODEL.PIXEL_MEAN), pixel_std=list(cfg.MODEL.PIXEL_STD),
                         bgr=cfg.INPUT.FORMAT == "BGR", grad_checkpointing=m.GRAD_CHECKPOINTING)
    return UMGKitBackbone(net=net, out_features=out_features, square_pad=m.SQUARE_PAD)
