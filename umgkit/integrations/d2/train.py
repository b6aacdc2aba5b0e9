"""``umgkit d2-train``: detectron2's own ``DefaultTrainer`` with umgkit's backbone and checkpoints.

What differs from ``tools/train_net.py``: the checkpoint hook saves trainable parameters and the
optimizer's state only (`TrainableCheckpointer`), ``--resume`` continues from the newest of those, the
optimizer sees trainable parameters only (AdamW by default, as ViTDet), and datasets named in
``DATASETS.TRAIN/TEST`` are registered from a COCO-layout folder when ``UMGKIT.COCO_ROOT`` is set.
Evaluation uses detectron2's COCOEvaluator (instances) or COCOPanopticEvaluator + SemSegEvaluator
(panoptic).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.engine import DefaultTrainer, default_setup, hooks, launch
from detectron2.evaluation import COCOEvaluator, COCOPanopticEvaluator, DatasetEvaluators, SemSegEvaluator
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from .._checkpoint import resumable_checkpoint
from .checkpoint import TrainableCheckpointer, load_trainable_weights, resume_training
from .config import add_umgkit_config

__all__ = ["UMGKitTrainer", "setup_cfg", "register_coco_root", "main", "launch_from_args"]

log = logging.getLogger(__name__)
_REGISTERED: dict[str, tuple[Path, Path]] = {}  # names register_coco_root added -> (json, image folder)


def register_coco_root(cfg) -> list[str]:
    """Register each unknown name in ``DATASETS.TRAIN + TEST`` from ``UMGKIT.COCO_ROOT``.

    Name ``<split>`` reads ``<root>/annotations/instances_<split>.json`` with images in ``<root>/<split>/``
    (COCO 2017's layout, and the synthetic world's ``coco/`` folder). Checks that the category count
    equals ``MODEL.ROI_HEADS.NUM_CLASSES``. Returns the names registered.
    """
    root = cfg.UMGKIT.COCO_ROOT
    if not root:
        return []
    root = Path(root)
    registered = []
    for name in list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST):
        ann, images = root / "annotations" / f"instances_{name}.json", root / name
        if name in DatasetCatalog.list() and name not in _REGISTERED:
            continue  # detectron2's builtin (or the user's own) dataset
        if not ann.is_file() or not images.is_dir():
            raise FileNotFoundError(f"UMGKIT.COCO_ROOT={root}: dataset '{name}' needs {ann} and the image "
                                    f"folder {images}; fix DATASETS.TRAIN/TEST or the root.")
        num = len(json.loads(ann.read_text(encoding="utf-8"))["categories"])
        if num != cfg.MODEL.ROI_HEADS.NUM_CLASSES:
            raise ValueError(f"{ann} has {num} categories but MODEL.ROI_HEADS.NUM_CLASSES="
                             f"{cfg.MODEL.ROI_HEADS.NUM_CLASSES}; pass MODEL.ROI_HEADS.NUM_CLASSES {num}.")
        if _REGISTERED.get(name) == (ann, images):
            continue
        if name in _REGISTERED:  # registered from another root earlier in this process: replace it
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
        register_coco_instances(name, {}, str(ann), str(images))
        _REGISTERED[name] = (ann, images)
        registered.append(name)
    return registered


class UMGKitTrainer(DefaultTrainer):
    """DefaultTrainer with trainable-only checkpoints, a trainable-only optimizer and COCO evaluators."""

    @classmethod
    def build_optimizer(cls, cfg, model: torch.nn.Module) -> torch.optim.Optimizer:
        params = get_default_optimizer_params(  # skips parameters without requires_grad
            model, base_lr=cfg.SOLVER.BASE_LR, weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
            bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR, weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS)
        name = cfg.UMGKIT.OPTIMIZER
        if name == "AdamW":
            opt = torch.optim.AdamW(params, lr=cfg.SOLVER.BASE_LR, betas=tuple(cfg.UMGKIT.BETAS),
                                    weight_decay=cfg.SOLVER.WEIGHT_DECAY)
        elif name == "SGD":
            opt = torch.optim.SGD(params, lr=cfg.SOLVER.BASE_LR, momentum=cfg.SOLVER.MOMENTUM,
                                  nesterov=cfg.SOLVER.NESTEROV, weight_decay=cfg.SOLVER.WEIGHT_DECAY)
        else:
            raise ValueError(f"UMGKIT.OPTIMIZER={name!r}; choose 'AdamW' or 'SGD'.")
        return maybe_add_gradient_clipping(cfg, opt)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name: str, output_folder: str | None = None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference")
        kind = MetadataCatalog.get(dataset_name).get("evaluator_type", "coco")
        if kind == "coco":  # boxes, plus masks when MODEL.MASK_ON
            evaluators = [COCOEvaluator(dataset_name, output_dir=output_folder)]
        elif kind == "coco_panoptic_seg":  # detectron2's "panoptic_separated" datasets
            evaluators = [SemSegEvaluator(dataset_name, distributed=True, output_dir=output_folder),
                          COCOPanopticEvaluator(dataset_name, output_folder),
                          COCOEvaluator(dataset_name, output_dir=output_folder)]
        else:
            raise NotImplementedError(f"no evaluator for dataset '{dataset_name}' (evaluator_type {kind!r}); "
                                      "the bridge evaluates 'coco' and 'coco_panoptic_seg' datasets.")
        return evaluators[0] if len(evaluators) == 1 else DatasetEvaluators(evaluators)

    def build_hooks(self) -> list:
        """detectron2's hooks with its PeriodicCheckpointer swapped for `TrainableCheckpointer`."""
        out = []
        for hook in super().build_hooks():
            if isinstance(hook, hooks.PeriodicCheckpointer):
                hook = TrainableCheckpointer(self.cfg.OUTPUT_DIR, self.cfg.SOLVER.CHECKPOINT_PERIOD,
                                             keep_last=self.cfg.UMGKIT.KEEP_LAST)
            out.append(hook)
        return out

    def resume_or_load(self, resume: bool = True) -> None:
        """``resume``: the newest intact ``OUTPUT_DIR/checkpoints/step_*`` (weights, optimizer moments, LR
        scheduler, iteration). Else ``MODEL.WEIGHTS``: a umgkit step directory (weights only), or any file
        detectron2's checkpointer reads."""
        last = resumable_checkpoint(Path(self.cfg.OUTPUT_DIR) / "checkpoints") if resume else None
        if last is not None:
            self.start_iter = resume_training(self, last)
            log.info("resumed from %s (iteration %d)", last, self.start_iter)
            return
        weights = self.cfg.MODEL.WEIGHTS
        if weights and Path(weights).is_dir():
            load_trainable_weights(self.model, weights)
        elif weights:
            self.checkpointer.load(weights)


def setup_cfg(config_file: str, opts: list[str] | None = None):
    """A frozen detectron2 config: defaults + umgkit keys + ``config_file`` + ``KEY VALUE`` ``opts``.

    Falls back to ``MODEL.DEVICE cpu`` (with a warning) when the config asks for CUDA and none is present,
    and turns ``SOLVER.AMP`` off on cpu (detectron2's AMP trainer needs CUDA).
    """
    cfg = get_cfg()
    add_umgkit_config(cfg)
    if not Path(config_file).is_file():
        raise FileNotFoundError(f"detectron2 config {config_file} does not exist; the shipped ones are "
                                "in configs/detectron2/.")
    cfg.merge_from_file(str(config_file))
    cfg.merge_from_list(list(opts or []))
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        log.warning("MODEL.DEVICE=%s but CUDA is not available; using cpu", cfg.MODEL.DEVICE)
        cfg.MODEL.DEVICE = "cpu"
    if cfg.MODEL.DEVICE == "cpu" and cfg.SOLVER.AMP.ENABLED:
        log.warning("SOLVER.AMP.ENABLED needs CUDA; training in float32 on cpu")
        cfg.SOLVER.AMP.ENABLED = False
    cfg.freeze()
    return cfg


def main(config_file: str, opts: list[str], resume: bool = False, eval_only: bool = False) -> dict:
    """Train (or evaluate); returns detectron2's evaluation results (``{task: {metric: value}}`` for one
    test dataset, ``{dataset: {task: ...}}`` for several)."""
    cfg = setup_cfg(config_file, opts)
    default_setup(cfg, argparse_like(config_file, opts, resume, eval_only))
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="umgkit")  # the hooks' messages
    register_coco_root(cfg)
    if eval_only:
        model = UMGKitTrainer.build_model(cfg)
        weights = cfg.MODEL.WEIGHTS or resumable_checkpoint(Path(cfg.OUTPUT_DIR) / "checkpoints")
        if not weights:
            raise FileNotFoundError(f"--eval-only needs MODEL.WEIGHTS or a checkpoint under "
                                    f"{cfg.OUTPUT_DIR}/checkpoints.")
        if Path(weights).is_dir():
            load_trainable_weights(model, weights)
        else:  # a detectron2 .pth file
            DetectionCheckpointer(model).load(str(weights))
        return UMGKitTrainer.test(cfg, model)
    trainer = UMGKitTrainer(cfg)
    trainer.resume_or_load(resume=resume)
    trainer.train()
    return getattr(trainer, "_last_eval_results", None) or {}


class argparse_like:  # noqa: N801  (default_setup reads these attributes of detectron2's argparse result)
    def __init__(self, config_file: str, opts: list[str], resume: bool, eval_only: bool) -> None:
        self.config_file, self.opts, self.resume, self.eval_only = config_file, opts, resume, eval_only


def launch_from_args(config_file: str, opts: list[str], *, resume: bool = False, eval_only: bool = False,
                     num_gpus: int = 1, num_machines: int = 1, machine_rank: int = 0,
                     dist_url: str = "auto") -> dict:
    """`main` through detectron2's ``launch`` (one process per GPU when ``num_gpus > 1``)."""
    results: dict = {}

    def _run() -> None:
        results.update(main(config_file, opts, resume=resume, eval_only=eval_only))

    launch(_run, num_gpus, num_machines=num_machines, machine_rank=machine_rank, dist_url=dist_url)
    return results if comm.is_main_process() else {}
