"""``semantic`` task: semantic segmentation with a frozen backbone, adapters and a dense head.

Data: an ADE20K-style reader (``ade20k`` by default; ``seg_folder`` via ``data.format``) with items
``{"image", "label_map": (H, W) int64, 255 = ignore, "path"}``. Train: random resized crop + flip to
``data.image_size``. Eval: the image alone is resized (``eval_resize``: shorter side to
``data.image_size``, ``square``, or ``none``); the label stays at its stored size and predictions are
resized back to it (bilinear on logits), as mmseg evaluates. Loss: cross-entropy with ignore 255 on
logits up-sampled to the label size (+ ``dice_weight`` x soft Dice, optional ``class_weights``).
Metric: one confusion matrix over the val set -> mIoU / mAcc / aAcc (+ per class), see
`umgkit.metrics.segmentation`.

Task options: see ``OPTIONS`` below (and docs/config_reference.md).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Option, RunConfig, parse_options
from ..data.build import build_dataset
from ..data.collate import collate_dicts
from ..metrics.segmentation import segmentation_confusion_matrix, segmentation_scores
from ..models import SemanticModel, build_model
from ..models.semantic import INFERENCE_OPTIONS
from ..registry import TASKS
from .build import attach_transforms, check_eval_classes, class_source

__all__ = ["OPTIONS", "SemanticTask", "dice_loss", "build_semantic_task"]

IGNORE = 255
OPTIONS = {
    **INFERENCE_OPTIONS,
    "reduce_zero_label": Option(None, "passed to the reader: label 0 becomes ignore (255) and the others "
                                      "shift down by one; null = the reader's default (ade20k: true)"),
    "crop_scale": Option((0.25, 1.0), "train random-resized-crop area range [lo, hi]"),
    "hflip": Option(0.5, "train horizontal-flip probability"),
    "dice_weight": Option(0.0, "weight of a soft Dice loss added to the cross-entropy; 0 = off"),
    "class_weights": Option(None, "cross-entropy weight per class, a list in label order; null = equal"),
    "per_class": Option(True, "also report IoU.<class> and Acc.<class>"),
    "num_vis": Option(4, "number of overlay PNGs (image | ground truth | prediction) written to vis/"),
    "val_data": Option(None, "mapping of {root, format, options, val_split, class_names, num_classes} "
                             "overriding data for the val split (open-vocabulary transfer to another "
                             "class set)"),
}
_VAL_DATA_KEYS = {"root", "format", "options", "val_split", "class_names", "num_classes"}



def dice_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE) -> torch.Tensor:
    """Soft Dice over labelled pixels, ``1 - mean_k 2|P_k T_k| / (|P_k| + |T_k|)`` (smoothed by 1)."""
    valid = (target != ignore_index).unsqueeze(1)  # (B, 1, H, W)
    probs = logits.float().softmax(1) * valid
    onehot = F.one_hot(target.clamp_max(logits.shape[1] - 1) * valid[:, 0], logits.shape[1])
    onehot = onehot.permute(0, 3, 1, 2).float() * valid  # (B, K, H, W)
    inter, total = (probs * onehot).sum((0, 2, 3)), (probs + onehot).sum((0, 2, 3))
    return 1 - ((2 * inter + 1) / (total + 1)).mean()


class SemanticTask:
    """Implements `umgkit.engine.Task` for semantic segmentation (see the module docstring)."""

    def __init__(self, *, model: SemanticModel, train_dataset, val_dataset, options: dict[str, Any]) -> None:
        self.model, self.train_dataset, self.val_dataset = model, train_dataset, val_dataset
        self.collate_fn = collate_dicts
        self.opts = options
        self.image_mean, self.image_std = model.preprocess.mean, model.preprocess.std
        self.train_names = list(model.class_names)
        self.val_names = list(val_dataset.class_names) if val_dataset is not None else self.train_names
        weights = options["class_weights"]
        self.class_weights = None if weights is None else torch.tensor(weights, dtype=torch.float32)

    # ------------------------------------------------------------------ training
    def training_step(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        logits = model(batch["image"])  # (B, K, H, W)
        target = batch["label_map"]  # (B, H, W)
        if logits.shape[-2:] != target.shape[-2:]:
            logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
        weight = None if self.class_weights is None else self.class_weights.to(logits.device)
        ce = F.cross_entropy(logits.float(), target, weight=weight, ignore_index=IGNORE)
        out = {"loss": ce, "ce": ce.detach()}
        if self.opts["dice_weight"]:
            dice = dice_loss(logits, target)
            out["loss"] = ce + self.opts["dice_weight"] * dice
            out["dice"] = dice.detach()
        return out

    # ------------------------------------------------------------------ inference
    def predict(self, model: nn.Module, image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Logits ``(B, K, *size)`` for images ``(B, 3, h, w)``: the model's own inference
        (`SemanticModel.segment`), the same call ``umgkit predict`` makes."""
        return model.segment(image, size)

    def _pairs(self, batch: dict):
        """(images (b, 3, h, w), labels (b, H, W)) groups: the whole batch when stacked, else one by one."""
        images, labels = batch["image"], batch["label_map"]
        if isinstance(images, torch.Tensor) and isinstance(labels, torch.Tensor):
            yield images, labels
            return
        for image, label in zip(images, labels, strict=True):
            yield image[None], label[None]

    def _eval_names(self, model: nn.Module) -> nn.Module:
        """The unwrapped model, switched to the val class set when the head is open-vocabulary."""
        if model.open_vocabulary and model.class_names != self.val_names:
            model.set_class_names(self.val_names)
        return model

    def evaluate(self, model: nn.Module, loader: Any, accelerator: Any) -> dict[str, float]:
        """Per-sample confusion matrices, gathered with ``gather_for_metrics`` (which drops the repeats
        Accelerate pads the last batch with) and summed: every process returns the dataset-level scores.
        """
        inner = self._eval_names(accelerator.unwrap_model(model))
        k = len(self.val_names)
        check_eval_classes(inner, self.val_names)
        total = torch.zeros(k, k, dtype=torch.int64, device=accelerator.device)
        try:
            for batch in loader:
                mats = []
                for images, labels in self._pairs(batch) if batch.get("batch_size", 1) else ():
                    pred = self.predict(inner, images, tuple(labels.shape[-2:])).argmax(1)
                    mats += [segmentation_confusion_matrix(p, t, k)
                             for p, t in zip(pred, labels, strict=True)]
                stacked = torch.stack(mats) if mats else total.new_zeros(0, k, k)
                total += accelerator.gather_for_metrics(stacked.to(total.device)).sum(0)
        finally:
            if inner.open_vocabulary:
                inner.set_class_names(self.train_names)
        return segmentation_scores(total, self.val_names, per_class=bool(self.opts["per_class"]))

    # ------------------------------------------------------------------ pictures
    def visualise(self, model: nn.Module, batch: dict, out_dir: Path) -> list[Path]:
        """``semantic_<i>.png`` per sample (up to ``num_vis``): image | ground truth | prediction overlays."""
        from ..vis import overlay_labels, save_grid, to_rgb

        model = self._eval_names(model)
        paths = []
        try:
            for image, label in self._pairs(batch):
                for j in range(image.shape[0]):
                    if len(paths) >= self.opts["num_vis"]:
                        break
                    size = tuple(label.shape[-2:])
                    pred = self.predict(model, image[j:j + 1], size).argmax(1)[0].cpu().numpy()
                    rgb = to_rgb(image[j], self.image_mean, self.image_std, size)
                    gt = label[j].cpu().numpy()
                    tiles = [rgb, overlay_labels(rgb, gt), overlay_labels(rgb, pred)]
                    paths.append(save_grid(tiles, Path(out_dir) / f"semantic_{len(paths)}.png", columns=3,
                                           titles=["image", "ground truth", "prediction"],
                                           scale=max(1, 192 // max(size))))
        finally:
            if model.open_vocabulary:
                model.set_class_names(self.train_names)
        return paths



def _task_options(options: dict[str, Any]) -> dict[str, Any]:
    merged = parse_options("semantic", OPTIONS, options)
    if merged["inference"] not in ("whole", "slide"):
        raise ValueError(f"task_options.inference={merged['inference']!r}: choose 'whole' or 'slide'.")
    if merged["eval_resize"] not in ("shorter", "square", "none", None):
        raise ValueError(f"task_options.eval_resize={merged['eval_resize']!r}: choose shorter, square or "
                         "none.")
    extra = sorted(set(merged["val_data"] or {}) - _VAL_DATA_KEYS)
    if extra:
        raise ValueError(f"task_options.val_data has unknown keys {extra}; valid: {sorted(_VAL_DATA_KEYS)}.")
    return merged


@TASKS.register("semantic")
def build_semantic_task(cfg: RunConfig, *, model: SemanticModel | None = None,
                        train: bool = True) -> SemanticTask:
    """Semantic segmentation on ``cfg.data`` with ``model`` (default: `build_model` from ``cfg.model``, head
    ``semantic_fpn``, classes of the train split). ``train=False`` reads only the val split."""
    opts = _task_options(cfg.task_options)
    rzl = opts["reduce_zero_label"]
    extra = {} if rzl is None else {"reduce_zero_label": bool(rzl)}  # else the reader's default
    train_set = build_dataset(cfg.data, cfg.data.train_split, None, "ade20k", **extra) if train else None
    val_cfg = dataclasses.replace(cfg.data, **(opts["val_data"] or {}))
    val = build_dataset(val_cfg, val_cfg.val_split, None, "ade20k", **extra) if val_cfg.val_split else None
    if model is None:
        model = build_model(cfg, class_source(cfg, train_set, val).class_names)
    attach_transforms("dense", model, train_set, val, opts)
    weights = opts["class_weights"]
    if weights is not None and len(weights) != len(model.class_names):
        raise ValueError(f"task_options.class_weights has {len(weights)} entries for "
                         f"{len(model.class_names)} classes; give one weight per class, in label order.")
    return SemanticTask(model=model, train_dataset=train_set, val_dataset=val, options=opts)
