"""Joint transforms: image, boxes and masks move together (torchvision.transforms.v2 + tv_tensors).

A transform is a callable ``dict -> dict`` over reader items. `JointTransform` wraps the known keys
as tv_tensors (``image`` -> Image, ``boxes`` -> BoundingBoxes in absolute XYXY pixels, ``masks`` and
``label_map`` -> Mask, so they are resized with nearest neighbour and label 255 = ignore survives),
runs a v2 pipeline, unwraps to plain tensors, clips boxes to the image, and drops instances that
vanished (box narrower than ``min_box_size`` or empty mask) from every per-instance key at once.

Example:
    >>> import torch
    >>> t = build_transforms("dense", train=True, image_size=64)
    >>> item = t({"image": torch.rand(3, 80, 100), "label_map": torch.zeros(80, 100, dtype=torch.long)})
    >>> tuple(item["image"].shape), tuple(item["label_map"].shape)
    ((3, 64, 64), (64, 64))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode, v2

__all__ = ["CLIP_MEAN", "CLIP_STD", "IMAGENET_MEAN", "IMAGENET_STD", "INSTANCE_KEYS", "JointTransform",
           "build_transforms"]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# keys whose first dimension (tensor) or length (list) indexes instances / regions / segments
INSTANCE_KEYS = ("boxes", "labels", "masks", "iscrowd", "isthing", "segment_ids", "has_mask", "areas",
                 "region_captions", "region_caption_sets", "region_tags")
_MASK_KEYS = ("masks", "label_map")


class JointTransform:
    """Run a list of v2 transforms jointly over an item dict (see module docstring)."""

    def __init__(self, transforms: Sequence[Callable], min_box_size: float = 1.0) -> None:
        self.pipeline = v2.Compose(list(transforms))
        self.min_box_size = float(min_box_size)

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        item = dict(item)
        image = item["image"]
        height, width = image.shape[-2:]
        item["image"] = tv_tensors.Image(image)
        if "boxes" in item:
            item["boxes"] = tv_tensors.BoundingBoxes(item["boxes"], format="XYXY",
                                                     canvas_size=(height, width))
        for key in _MASK_KEYS:
            if key in item:
                item[key] = tv_tensors.Mask(item[key])
        out = self.pipeline(item)
        out = {k: v.as_subclass(torch.Tensor) if isinstance(v, tv_tensors.TVTensor) else v
               for k, v in out.items()}
        return self._drop_vanished(out)

    def _drop_vanished(self, item: dict[str, Any]) -> dict[str, Any]:
        height, width = item["image"].shape[-2:]
        keep = None
        if "boxes" in item:
            boxes = item["boxes"].clone()
            boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
            boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
            item["boxes"] = boxes
            keep = ((boxes[:, 2] - boxes[:, 0]) >= self.min_box_size) & \
                   ((boxes[:, 3] - boxes[:, 1]) >= self.min_box_size)
        if "masks" in item and item["masks"].dim() == 3:
            nonempty = item["masks"].flatten(1).ne(0).any(dim=1)  # (K,) bool
            keep = nonempty if keep is None else keep & nonempty
        if keep is None or bool(keep.all()):
            return item
        count = int(keep.numel())
        for key in INSTANCE_KEYS:
            value = item.get(key)
            if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == count:
                item[key] = value[keep]
            elif isinstance(value, list) and len(value) == count:
                item[key] = [v for v, k in zip(value, keep.tolist(), strict=True) if k]
        return item

    def __repr__(self) -> str:
        return f"JointTransform({self.pipeline})"


def build_transforms(kind: str, train: bool, image_size: int, *, mean: Sequence[float] = CLIP_MEAN,
                     std: Sequence[float] = CLIP_STD, normalize: bool = True,
                     scale: tuple[float, float] | None = None, hflip: float = 0.5,
                     eval_resize: str | None = None, min_box_size: float = 1.0) -> JointTransform:
    """The standard pipelines; output images are normalised with ``mean``/``std`` (CLIP by default).

    - ``classification``: train = RandomResizedCrop(scale 0.08-1, bicubic) + flip; eval = resize the
      shorter side to ``image_size`` (bicubic) + centre crop (CLIP preprocessing).
    - ``dense`` (semantic / panoptic): train = RandomResizedCrop(scale 0.25-1) + flip; eval = resize
      (``eval_resize``: ``"shorter"`` side, the default, or ``"square"``).
    - ``detection``: train = RandomResizedCrop(scale 0.3-1) + flip; eval as dense. Boxes are clipped
      and vanished instances removed with their labels and masks.
    Masks and label maps always use nearest-neighbour resampling.
    """
    if kind not in ("classification", "dense", "detection"):
        raise ValueError(f"Unknown transform kind '{kind}'; choose classification, dense or detection.")
    if eval_resize not in (None, "shorter", "square"):
        raise ValueError(f"eval_resize='{eval_resize}'; choose 'shorter' or 'square'.")
    size = int(image_size)
    interp = InterpolationMode.BICUBIC if kind == "classification" else InterpolationMode.BILINEAR
    default_scale = {"classification": (0.08, 1.0), "dense": (0.25, 1.0), "detection": (0.3, 1.0)}[kind]
    steps: list[Callable] = []
    if train:
        steps.append(v2.RandomResizedCrop(size, scale=scale or default_scale, interpolation=interp,
                                          antialias=True))
        if hflip > 0:
            steps.append(v2.RandomHorizontalFlip(p=hflip))
    elif kind == "classification":
        steps += [v2.Resize(size, interpolation=interp, antialias=True), v2.CenterCrop(size)]
    elif (eval_resize or "shorter") == "square":
        steps.append(v2.Resize((size, size), interpolation=interp, antialias=True))
    else:
        steps.append(v2.Resize(size, interpolation=interp, antialias=True))
    # uint8 images (the shard reader decodes to uint8) are cropped first, then converted; floats pass.
    steps.append(v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True))
    if normalize:
        steps.append(v2.Normalize(mean=list(mean), std=list(std)))
    return JointTransform(steps, min_box_size=min_box_size)
