"""``panoptic`` task: Mask2Former-style panoptic segmentation with a frozen backbone, adapters and a head.

Data: a COCO panoptic reader (``coco_panoptic`` by default) with items ``{"image", "masks": (K, H, W)
bool, "labels", "isthing", "iscrowd", "segment_ids", "image_id", "file_name", ...}``. Train: random resized
crop + flip to ``data.image_size`` (masks move with the image, vanished segments are dropped); crowd
segments are not matched targets. Eval: only the image is resized (``eval_resize``); predictions are
up-sampled to the stored size, so images of any size are evaluated one by one at their own resolution.
Loss: Hungarian-matched class CE ("no object" down-weighted) + sigmoid BCE + dice on sampled points, on
the last and every auxiliary decoder layer (`umgkit.heads.mask2former.SetCriterion`).
Metric: PQ / SQ / RQ (all, things ``_th``, stuff ``_st``, per class) counted per image exactly as
panopticapi and summed over the dataset (`umgkit.metrics.panoptic`), plus the mIoU of the semantic output
of the same model. ``save_predictions`` writes COCO panoptic PNG + JSON for panopticapi or
`pq_compute_files`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import Option, RunConfig, parse_options
from ..data.build import build_dataset
from ..data.collate import collate_dicts
from ..heads.mask2former import SetCriterion
from ..metrics.panoptic import pq_image_counts, pq_summary, write_panoptic_json, write_panoptic_png
from ..metrics.segmentation import segmentation_confusion_matrix, segmentation_scores
from ..models import PanopticModel, build_model
from ..models.panoptic import INFERENCE_OPTIONS
from ..registry import TASKS
from .build import attach_transforms, check_eval_classes, class_source

__all__ = ["PanopticTask", "build_panoptic_task", "OPTIONS"]

OPTIONS = {
    **INFERENCE_OPTIONS,
    "crop_scale": Option([0.25, 1.0], "train RandomResizedCrop area range [min, max]"),
    "hflip": Option(0.5, "train horizontal-flip probability"),
    "class_weight": Option(2.0, "loss and matching weight of the class cross-entropy"),
    "mask_weight": Option(5.0, "loss and matching weight of the sigmoid BCE on sampled points"),
    "dice_weight": Option(5.0, "loss and matching weight of the dice loss on sampled points"),
    "no_object_weight": Option(0.1, "cross-entropy weight of the 'no object' class"),
    "num_points": Option(12544, "points sampled per mask for matching and the mask losses"),
    "oversample_ratio": Option(3.0, "point sampling: candidates per point for importance sampling"),
    "importance_sample_ratio": Option(0.75, "point sampling: fraction of points taken by uncertainty"),
    "per_class": Option(True, "report PQ.<name> / SQ.<name> / RQ.<name>"),
    "num_vis": Option(4, "panoptic PNGs written after training (image | ground truth | prediction)"),
    "save_predictions": Option(False, "write val predictions as COCO panoptic PNG + JSON to "
                                      "<output_dir>/panoptic_predictions"),
    "val_data": Option(None, "{root, format, options, val_split, class_names, num_classes} overriding data "
                             "for the val split (open-vocabulary transfer to another class set)"),
}
_VAL_DATA_KEYS = {"root", "format", "options", "val_split", "class_names", "num_classes"}
_IGNORE = 255



class PanopticTask:
    """Implements `umgkit.engine.Task` for panoptic segmentation (see the module docstring)."""

    def __init__(self, *, model: PanopticModel, train_dataset, val_dataset, options: dict[str, Any],
                 criterion: SetCriterion, output_dir: str | Path | None = None) -> None:
        self.model, self.train_dataset, self.val_dataset = model, train_dataset, val_dataset
        self.collate_fn = collate_dicts
        self.opts, self.criterion = options, criterion
        self.image_mean, self.image_std = model.preprocess.mean, model.preprocess.std
        self.output_dir = Path(output_dir) if output_dir else None
        self.train_names = list(model.class_names)
        self.train_isthing = list(model.thing_classes)
        if val_dataset is not None:
            self.val_names, self.val_isthing = list(val_dataset.class_names), [bool(t) for t in
                                                                               val_dataset.thing_classes]
            self.val_cat_ids = list(getattr(val_dataset, "label_to_cat_id", range(len(self.val_names))))
        else:
            self.val_names, self.val_isthing = self.train_names, self.train_isthing
            self.val_cat_ids = list(model.category_ids)

    # ------------------------------------------------------------------ training
    def training_step(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        out = model(batch["image"])
        masks, labels = [], []
        for m, lab, crowd in zip(batch["masks"], batch["labels"], batch["iscrowd"], strict=True):
            keep = ~crowd
            masks.append(m[keep].float())
            labels.append(lab[keep])
        layers = [*out["aux"], {"pred_logits": out["pred_logits"], "pred_masks": out["pred_masks"]}]
        self.criterion.to(out["pred_logits"].device)
        return self.criterion([d["pred_logits"] for d in layers], [d["pred_masks"] for d in layers], masks,
                              labels)

    # ------------------------------------------------------------------ inference
    def predict(self, model: nn.Module, image: torch.Tensor, size: tuple[int, int]) -> dict[str, Any]:
        """One image ``(3, h, w)`` -> the model's `PanopticModel.segment` at ``size`` (what ``umgkit
        predict`` runs)."""
        return model.segment(image, size)

    def _eval_names(self, model: nn.Module) -> nn.Module:
        """The model switched to the val class set (open vocabulary) and its thing / stuff split."""
        if model.open_vocabulary and model.class_names != self.val_names:
            model.set_class_names(self.val_names)
        model.thing_classes = list(self.val_isthing)
        return model

    def _restore_names(self, model: nn.Module) -> None:
        if model.open_vocabulary:
            model.set_class_names(self.train_names)
        model.thing_classes = list(self.train_isthing)

    def evaluate(self, model: nn.Module, loader: Any, accelerator: Any) -> dict[str, float]:
        """Per-image PQ counts ``(C, 4)`` and confusion matrices, gathered with ``gather_for_metrics`` (which
        drops the repeats Accelerate pads the last batch with) and summed on every process."""
        inner = self._eval_names(accelerator.unwrap_model(model))
        k = len(self.val_names)
        check_eval_classes(inner, self.val_names)
        device = accelerator.device
        counts = torch.zeros(k, 4, dtype=torch.float64, device=device)
        confusion = torch.zeros(k, k, dtype=torch.int64, device=device)
        records = []
        try:
            for batch in loader:
                per_counts, per_conf = [], []
                for i in range(batch.get("batch_size", 0)):
                    c, m, rec = self._evaluate_one(inner, batch, i)
                    per_counts.append(c)
                    per_conf.append(m)
                    records += [rec] if rec else []
                stacked = torch.stack(per_counts).to(device) if per_counts else counts.new_zeros(0, k, 4)
                mats = torch.stack(per_conf).to(device) if per_conf else confusion.new_zeros(0, k, k)
                counts += accelerator.gather_for_metrics(stacked).sum(0)
                confusion += accelerator.gather_for_metrics(mats).sum(0)
        finally:
            self._restore_names(inner)
        if records:
            rank = getattr(accelerator, "process_index", 0)
            name = "panoptic_predictions.json" if rank == 0 else f"panoptic_predictions_{rank}.json"
            cats = [{"id": c, "name": n, "isthing": int(t)}
                    for c, n, t in zip(self.val_cat_ids, self.val_names, self.val_isthing, strict=True)]
            write_panoptic_json(self.output_dir / name, records, cats)
        per_class = bool(self.opts["per_class"])
        out = pq_summary(counts.cpu().numpy(), self.val_isthing, self.val_names, per_class=per_class)
        sem = segmentation_scores(confusion, self.val_names, per_class=False)
        out.update({"mIoU": sem["mIoU"], "aAcc": sem["aAcc"]})
        return out

    def _evaluate_one(self, model: nn.Module, batch: dict, i: int):
        image = batch["image"][i]
        gt_masks = batch["masks"][i]
        size = tuple(int(v) for v in batch["orig_size"][i])  # the stored size: masks and maps live there
        pred = self.predict(model, image, size)
        ids, segments = pred["panoptic"]
        gt_ids, gt_segments, gt_label = self._ground_truth(batch, i, size, gt_masks.device)
        counts = pq_image_counts(gt_ids.cpu().numpy(), gt_segments, ids.cpu().numpy(), segments,
                                 list(range(len(self.val_names))), image=str(batch["file_name"][i]))
        conf = segmentation_confusion_matrix(pred["semantic"].argmax(0), gt_label, len(self.val_names),
                                             ignore_index=_IGNORE)
        record = None
        if self.opts["save_predictions"] and self.output_dir is not None:
            name = str(batch["file_name"][i])
            write_panoptic_png(ids.cpu().numpy(), self.output_dir / "panoptic_predictions" / name)
            record = {"image_id": _plain(batch["image_id"][i]), "file_name": name,
                      "segments_info": [{"id": s["id"], "category_id": self.val_cat_ids[s["category_id"]],
                                         "score": s["score"]} for s in segments]}
        return torch.from_numpy(counts), conf.cpu(), record

    @staticmethod
    def _ground_truth(batch: dict, i: int, size: tuple[int, int], device):
        """``(ids (H, W), segments, semantic label map (H, W) with 255 on VOID / crowd)``."""
        ids = torch.zeros(size, dtype=torch.int64, device=device)
        label_map = torch.full(size, _IGNORE, dtype=torch.int64, device=device)
        segments = []
        for m, sid, lab, crowd in zip(batch["masks"][i], batch["segment_ids"][i], batch["labels"][i],
                                      batch["iscrowd"][i], strict=True):
            ids[m] = int(sid)
            if not bool(crowd):
                label_map[m] = int(lab)
            segments.append({"id": int(sid), "category_id": int(lab), "iscrowd": int(bool(crowd)),
                             "area": int(m.sum())})
        return ids, segments, label_map

    # ------------------------------------------------------------------ pictures
    def visualise(self, model: nn.Module, batch: dict, out_dir: Path) -> list[Path]:
        """``panoptic_<i>.png`` per sample (up to ``num_vis``): image | ground truth | prediction, one colour
        per segment (segments of one class share a hue family), VOID black."""
        from ..vis import panoptic_colours, save_grid, to_rgb

        model = self._eval_names(model)
        paths = []
        try:
            for i in range(min(batch.get("batch_size", 0), int(self.opts["num_vis"]))):
                masks = batch["masks"][i]
                size = tuple(masks.shape[-2:])
                ids, segments = self.predict(model, batch["image"][i], size)["panoptic"]
                gt_ids, gt_segments, _ = self._ground_truth(batch, i, size, masks.device)
                gt_cats = {s["id"]: s["category_id"] + 1 for s in gt_segments}
                cats = {s["id"]: s["category_id"] + 1 for s in segments}
                tiles = [to_rgb(batch["image"][i], self.image_mean, self.image_std, size),
                         panoptic_colours(gt_ids.cpu().numpy(), gt_cats),
                         panoptic_colours(ids.cpu().numpy(), cats)]
                paths.append(save_grid(tiles, Path(out_dir) / f"panoptic_{i}.png", columns=3,
                                       titles=["image", "ground truth", "prediction"],
                                       scale=max(1, 192 // max(size))))
        finally:
            self._restore_names(model)
        return paths



def _plain(value):
    return value.item() if isinstance(value, torch.Tensor) else value


def _check(opts: dict[str, Any]) -> None:
    if opts["eval_resize"] not in ("shorter", "square", "none", None):
        raise ValueError(f"task_options.eval_resize={opts['eval_resize']!r}: choose shorter, square or none.")
    extra = sorted(set(opts["val_data"] or {}) - _VAL_DATA_KEYS)
    if extra:
        raise ValueError(f"task_options.val_data has unknown keys {extra}; valid: {sorted(_VAL_DATA_KEYS)}.")
    for key in ("object_threshold", "mask_threshold", "overlap_threshold"):
        if not 0.0 <= float(opts[key]) <= 1.0:
            raise ValueError(f"task_options.{key}={opts[key]}: give a value in [0, 1].")


@TASKS.register("panoptic")
def build_panoptic_task(cfg: RunConfig, *, model: PanopticModel | None = None,
                        train: bool = True) -> PanopticTask:
    """Panoptic segmentation on ``cfg.data`` with ``model`` (default: `build_model` from ``cfg.model``, head
    ``mask2former``, classes of the train split). ``train=False`` reads only the val split."""
    opts = parse_options("panoptic", OPTIONS, cfg.task_options)
    _check(opts)
    train_set = build_dataset(cfg.data, cfg.data.train_split, None, "coco_panoptic") if train else None
    val_cfg = dataclasses.replace(cfg.data, **(opts["val_data"] or {}))
    val = build_dataset(val_cfg, val_cfg.val_split, None, "coco_panoptic") if val_cfg.val_split else None
    for name, ds in (("train", train_set), ("val", val)):
        if ds is not None and not hasattr(ds, "thing_classes"):
            raise ValueError(f"task 'panoptic': the {name} reader '{cfg.data.format}' gives no "
                             "thing_classes; use a panoptic reader such as coco_panoptic.")
    if model is None:
        source = class_source(cfg, train_set, val)
        model = build_model(cfg, source.class_names, thing_classes=source.thing_classes,
                            category_ids=getattr(source, "label_to_cat_id", None))
    attach_transforms("dense", model, train_set, val, opts)
    k = len(model.class_names)
    criterion = SetCriterion(num_classes=k, class_weight=float(opts["class_weight"]),
                             mask_weight=float(opts["mask_weight"]), dice_weight=float(opts["dice_weight"]),
                             no_object_weight=float(opts["no_object_weight"]),
                             num_points=int(opts["num_points"]),
                             oversample_ratio=float(opts["oversample_ratio"]),
                             importance_sample_ratio=float(opts["importance_sample_ratio"]))
    return PanopticTask(model=model, train_dataset=train_set, val_dataset=val, options=opts,
                        criterion=criterion, output_dir=cfg.output_dir)
