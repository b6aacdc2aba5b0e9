"""``detection`` task: ViTDet-style Faster / Mask R-CNN on a frozen backbone with adapters.

Data: a COCO instances reader (``coco_instances`` by default) with items ``{"image", "boxes" (K, 4) XYXY
pixels, "labels" (K,) in [0, C), "iscrowd", ["masks" (K, H, W)], "image_id", "orig_size" (H, W)}``.
String values in ``data.options`` may contain ``{split}`` (``annotations_file:
annotations/instances_{split}.json``). Train: random resized crop + flip to ``data.image_size`` (boxes and
masks move with the image; crowd instances are left out of the targets). Eval: the image alone is resized
(``eval_resize``); images of different sizes stay a list and the head pads them into one batch;
detections are mapped back to each image's stored size. Loss: torchvision's RPN + RoI losses, summed.
Metric: pycocotools COCOeval ``bbox`` (and ``segm`` with ``masks``) against the reader's instances JSON
(or ground truth built from the loaded targets when the reader has none), reported as ``box_AP``,
``box_AP50``, ``box_AP75``, ``box_APs/m/l`` (``mask_*`` likewise), fractions in [0, 1]. Predictions are
written as a COCO results JSON to ``<output_dir>/eval/coco_instances_results.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import RunConfig, parse_options
from ..config.options import Option
from ..data.build import build_dataset
from ..data.collate import collate_dicts
from ..metrics.detection import (
    coco_evaluate,
    coco_gt_from_targets,
    detections_to_coco,
    encode_masks,
    write_results,
)
from ..models import DetectionModel, build_model
from ..models.detection import INFERENCE_OPTIONS
from ..registry import TASKS
from .build import attach_transforms, class_source
from .retrieval import split_options

__all__ = ["OPTIONS", "DetectionTask", "build_detection_task"]

OPTIONS = {
    **INFERENCE_OPTIONS,
    "crop_scale": Option((0.3, 1.0), "train RandomResizedCrop area range [min, max]"),
    "hflip": Option(0.5, "train horizontal-flip probability"),
    "save_results": Option(True, "write the COCO results JSON under <output_dir>/eval/"),
    "print_summary": Option(True, "print COCOeval's AP table after evaluation (main process)"),
    "num_vis": Option(4, "pictures written by visualise (ground truth | prediction boxes)"),
}



class DetectionTask:
    """Implements `umgkit.engine.Task` for detection / instance segmentation (see the module docstring)."""

    def __init__(self, *, model: DetectionModel, train_dataset, val_dataset, options: dict[str, Any],
                 output_dir: str | Path) -> None:
        self.model, self.train_dataset, self.val_dataset = model, train_dataset, val_dataset
        self.collate_fn = collate_dicts
        self.opts, self.output_dir = options, Path(output_dir)
        self.masks = bool(options["masks"])
        self.image_mean, self.image_std = model.preprocess.mean, model.preprocess.std
        self.class_names = list(model.class_names)
        ref = val_dataset if val_dataset is not None else model
        self.label_to_cat_id = list(getattr(ref, "label_to_cat_id", None) or model.category_ids)
        self.summary: list[str] = []  # COCOeval tables of the last evaluation

    # ------------------------------------------------------------------ training
    def _targets(self, batch: dict) -> list[dict]:
        targets = []
        for i in range(batch["batch_size"]):
            keep = batch["iscrowd"][i] == 0 if "iscrowd" in batch else slice(None)
            tgt = {"boxes": batch["boxes"][i][keep], "labels": batch["labels"][i][keep]}
            if self.masks:
                tgt["masks"] = batch["masks"][i][keep]
            targets.append(tgt)
        return targets

    def training_step(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        losses = model(batch["image"], self._targets(batch))
        out = {"loss": sum(losses.values())}
        out.update({k.removeprefix("loss_"): v.detach() for k, v in losses.items()})
        return out

    # ------------------------------------------------------------------ inference
    @staticmethod
    def _sizes(batch: dict) -> list[tuple[int, int]]:
        """Stored (H, W) per image: detections are mapped back to it (the reader's ``orig_size``)."""
        if "orig_size" in batch:
            return [(int(s[0]), int(s[1])) for s in batch["orig_size"]]
        return [(int(im.shape[-2]), int(im.shape[-1])) for im in batch["image"]]

    def _records(self, model: nn.Module, batch: dict, with_gt: bool) -> list[dict]:
        """Plain per-image records (COCO results + optional ground truth) that gather across processes."""
        sizes = self._sizes(batch)
        detections = model(batch["image"], original_sizes=sizes)
        records = []
        for i, (det, size) in enumerate(zip(detections, sizes, strict=True)):
            image_id = int(batch["image_id"][i])
            masks = model.binary_masks(det) if self.masks else None
            rles = None if masks is None else encode_masks(masks.cpu())
            rec = {"image_id": image_id, "height": size[0], "width": size[1],
                   "results": detections_to_coco(image_id, det["boxes"], det["scores"], det["labels"],
                                                 self.label_to_cat_id, rles)}
            if with_gt:
                rec["gt"] = {"boxes": batch["boxes"][i].cpu().tolist(),
                             "labels": batch["labels"][i].cpu().tolist(),
                             "iscrowd": batch["iscrowd"][i].cpu().tolist() if "iscrowd" in batch else None,
                             "rles": encode_masks(batch["masks"][i].cpu()) if self.masks and "masks" in batch
                             else None}
            records.append(rec)
        return records

    def _ground_truth(self, records: list[dict]):
        path = getattr(self.val_dataset, "annotations_file", None)
        if path is not None and Path(path).is_file():
            return path
        targets = [{"boxes": torch.tensor(r["gt"]["boxes"]).reshape(-1, 4),
                    "labels": torch.tensor(r["gt"]["labels"], dtype=torch.int64),
                    "iscrowd": r["gt"]["iscrowd"], "rles": r["gt"]["rles"]} for r in records]
        images = [{"id": r["image_id"], "height": r["height"], "width": r["width"]} for r in records]
        return coco_gt_from_targets(images, targets, self.label_to_cat_id, self.class_names)

    def evaluate(self, model: nn.Module, loader: Any, accelerator: Any) -> dict[str, float]:
        """Per-image COCO results gathered with ``gather_for_metrics`` (objects; the repeats Accelerate
        pads the last batch with are dropped), then COCOeval on every process (same numbers everywhere)."""
        inner = accelerator.unwrap_model(model)
        with_gt = not Path(str(getattr(self.val_dataset, "annotations_file", ""))).is_file()
        records: list[dict] = []
        for batch in loader:
            local = self._records(inner, batch, with_gt) if batch.get("batch_size", 1) else []
            records += accelerator.gather_for_metrics(local, use_gather_object=True)
        results = [r for rec in records for r in rec["results"]]
        if self.opts["save_results"] and accelerator.is_main_process:
            write_results(self.output_dir / "eval" / "coco_instances_results.json", results)
        gt, ids = self._ground_truth(records), [r["image_id"] for r in records]
        self.summary = []
        metrics = coco_evaluate(gt, results, "bbox", image_ids=ids, prefix="box_", summary=self.summary)
        if self.masks:
            metrics.update(coco_evaluate(gt, results, "segm", image_ids=ids, prefix="mask_",
                                         summary=self.summary))
        if self.opts["print_summary"] and accelerator.is_main_process:
            for kind, table in zip(("bbox", "segm"), self.summary, strict=False):
                print(f"COCOeval {kind} on {len(ids)} images (pycocotools):\n{table.rstrip()}")
        return metrics

    # ------------------------------------------------------------------ pictures
    def visualise(self, model: nn.Module, batch: dict, out_dir: Path) -> list[Path]:
        """``detection_<i>.png`` per sample (up to ``num_vis``): ground truth | predictions (score >=
        ``vis_score``, with masks when the model has a mask branch), labelled with class names."""
        from ..vis import draw_boxes, overlay_labels, save_grid, to_rgb

        sizes = self._sizes(batch)
        detections = model(batch["image"], original_sizes=sizes)
        paths = []
        for i, (det, size) in enumerate(zip(detections, sizes, strict=True)):
            if i >= self.opts["num_vis"]:
                break
            rgb = to_rgb(batch["image"][i], self.image_mean, self.image_std, size)
            gt_labels = batch["labels"][i].tolist()
            gt = draw_boxes(rgb, batch["boxes"][i].tolist(), [self.class_names[c] for c in gt_labels],
                            colours=gt_labels)
            keep = det["scores"] >= self.opts["vis_score"]
            labels = det["labels"][keep].tolist()
            pred = rgb
            if self.masks and keep.any():
                label_map = torch.full(size, 255, dtype=torch.int64)
                for m, c in zip(det["masks"][keep].flip(0), det["labels"][keep].flip(0), strict=True):
                    label_map[m[0].cpu() > self.opts["mask_threshold"]] = int(c)  # best score drawn last
                pred = overlay_labels(rgb, label_map.numpy())
            pred = draw_boxes(pred, det["boxes"][keep].tolist(), [self._name(c) for c in labels],
                              scores=det["scores"][keep].tolist(), colours=labels)
            paths.append(save_grid([gt, pred], Path(out_dir) / f"detection_{i}.png", columns=2,
                                   titles=["ground truth", "prediction"], scale=max(1, 256 // max(size))))
        return paths

    def _name(self, label: int) -> str:
        names = getattr(self.model.head, "class_names", None) or self.class_names
        return names[label] if label < len(names) else str(label)



def _check(opts: dict[str, Any]) -> None:
    if opts["eval_resize"] not in ("shorter", "square", "none", None):
        raise ValueError(f"task_options.eval_resize={opts['eval_resize']!r}: choose shorter, square or none.")
    lo, hi = (float(v) for v in opts["crop_scale"])
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"task_options.crop_scale={list(opts['crop_scale'])}: need 0 < min <= max <= 1.")


@TASKS.register("detection")
def build_detection_task(cfg: RunConfig, *, model: DetectionModel | None = None,
                         train: bool = True) -> DetectionTask:
    """Detection (+ instance masks) on ``cfg.data`` with ``model`` (default: `build_model` from ``cfg.model``,
    head ``vitdet_rcnn``, classes of the train split). ``train=False`` reads only the val split."""
    opts = parse_options("detection", OPTIONS, cfg.task_options)
    _check(opts)
    coco = (cfg.data.format or "coco_instances") == "coco_instances"
    train_set = val = None
    if train:
        extra = {"with_masks": bool(opts["masks"])} if coco else {}
        train_set = build_dataset(split_options(cfg.data, cfg.data.train_split), cfg.data.train_split, None,
                                  "coco_instances", **extra)
    if cfg.data.val_split:
        # the JSON is the ground truth: val masks are needed only when it is missing (other readers)
        val_extra = {"with_masks": False} if coco else {}
        val = build_dataset(split_options(cfg.data, cfg.data.val_split), cfg.data.val_split, None,
                            "coco_instances", **val_extra)
    if model is None:
        source = class_source(cfg, train_set, val)
        model = build_model(cfg, source.class_names, category_ids=getattr(source, "label_to_cat_id", None))
    attach_transforms("detection", model, train_set, val, opts)
    return DetectionTask(model=model, train_dataset=train_set, val_dataset=val, options=opts,
                         output_dir=cfg.output_dir)
