"""`run_pretrain`: train on the engine, save the ``umg:`` checkpoint, run the zero-shot evaluations.

Outputs under ``cfg.output_dir``: the engine's ``config.yaml``, ``metrics.jsonl``, ``tb/`` and
``checkpoints/`` (resume with ``train.resume=auto``), then ``backbone/`` (``model.safetensors`` +
``config.json``: load it with ``create_backbone("umg:<output_dir>/backbone")``) and ``zeroshot.json``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .._io import atomic_write_text
from ..backbones.umg import save_umg_checkpoint
from ..config import ConfigError, RunConfig
from ..data.transforms import build_transforms
from ..registry import DATASETS
from .task import build_pretrain_task, parse_pretrain_options, zeroshot_templates
from .zeroshot import format_zeroshot, zeroshot_classification, zeroshot_regions, zeroshot_segmentation

__all__ = ["run_pretrain", "zeroshot_specs", "evaluate_zeroshot", "BACKBONE_DIR"]

BACKBONE_DIR = "backbone"
_KINDS = {"classification": ("classification", zeroshot_classification),
          "regions": ("detection", zeroshot_regions),
          "segmentation": ("dense", zeroshot_segmentation)}


def zeroshot_specs(cfg: RunConfig, setting: Any) -> dict[str, dict]:
    """Reader specs ``{kind: {"format", "root", "split", "options"}}`` from ``task_options.zeroshot``."""
    if setting in (None, "none", False):
        return {}
    if setting == "auto":
        if not cfg.data.synthetic.out:
            return {}
        world = Path(cfg.data.synthetic.out)
        coco = world / "coco"
        return {"classification": {"format": "imagefolder", "root": str(world / "imagefolder"),
                                   "split": "val"},
                "regions": {"format": "coco_instances", "root": str(coco), "split": "val",
                            "options": {"image_dir": "val",  # both relative to the root
                                        "annotations_file": "annotations/instances_val.json"}},
                "segmentation": {"format": "ade20k", "root": str(world / "ade"), "split": "val"}}
    if not isinstance(setting, dict) or set(setting) - set(_KINDS):
        raise ConfigError(f"task_options.zeroshot={setting!r}: give 'auto', 'none' or a mapping with keys "
                          f"{sorted(_KINDS)} -> {{format, root, split, options}}.")
    for kind, spec in setting.items():
        if not isinstance(spec, dict) or not {"format", "root"} <= set(spec):
            raise ConfigError(f"task_options.zeroshot.{kind} needs at least 'format' and 'root' (and "
                              "optionally 'split', default val, and reader 'options').")
    return {k: {"split": "val", **v} for k, v in setting.items()}


@torch.no_grad()
def evaluate_zeroshot(backbone: Any, specs: dict[str, dict], *, image_size: int,
                      templates: Sequence[str] | dict[str, Sequence[str]],
                      batch_size: int = 64) -> dict[str, dict[str, float]]:
    """Run each granularity in ``specs`` on ``backbone`` (eval mode); results keyed like ``specs``.
    ``templates``: one list for all, or one per granularity (`zeroshot_templates`)."""
    per_kind = zeroshot_templates(templates)
    was_training = backbone.training
    backbone.eval()
    results = {}
    for kind, spec in specs.items():
        transform_kind, fn = _KINDS[kind]
        tf = build_transforms(transform_kind, train=False, image_size=image_size, mean=backbone.image_mean,
                              std=backbone.image_std)
        dataset = DATASETS.build(spec["format"], root=spec["root"], split=spec.get("split", "val"),
                                 transform=tf, **spec.get("options", {}))
        results[kind] = fn(backbone, dataset, templates=per_kind[kind], batch_size=batch_size)
    backbone.train(was_training)
    return results


def run_pretrain(cfg: RunConfig, *, echo: bool = True) -> dict[str, Any]:
    """Pretrain as ``cfg`` says; returns ``{"train": final scalars, "zeroshot": {...}, "backbone": path}``.

    Zero-shot evaluation runs on the main process only (its datasets are small, and the checkpoint it
    evaluates is the one just written).
    """
    from ..engine import Trainer, read_metrics, seed_everything

    if cfg.task != "pretrain":
        raise ConfigError(f"`umgkit pretrain` runs task 'pretrain', the config says task: {cfg.task!r}; use "
                          "`umgkit train` for other tasks.")
    opts = parse_pretrain_options(cfg)
    specs = zeroshot_specs(cfg, opts["zeroshot"])
    seed_everything(cfg.seed)  # as build_task does; pretraining needs nothing of the task layer
    task = build_pretrain_task(cfg)
    trainer = Trainer(task, cfg)
    trainer.fit()
    acc = trainer.accelerator
    result: dict[str, Any] = {"train": {}, "zeroshot": {}, "backbone": None, "load": None}
    if acc.is_main_process:
        out = Path(cfg.output_dir)
        backbone = acc.unwrap_model(trainer.model).backbone
        result["backbone"], result["load"] = save_pretrained_backbone(backbone, cfg.model.backbone,
                                                                      out / BACKBONE_DIR)
        rows = [r for r in read_metrics(out / "metrics.jsonl") if "train/loss" in r]
        result["train"] = {k: v for k, v in (rows[-1] if rows else {}).items() if k.startswith("train/")}
        result["zeroshot"] = evaluate_zeroshot(backbone, specs, image_size=cfg.data.image_size,
                                               templates=opts["zeroshot_templates"],
                                               batch_size=int(opts["zeroshot_batch_size"]))
        atomic_write_text(out / "zeroshot.json", json.dumps(result["zeroshot"], indent=2) + "\n")
        if echo:
            print(f"backbone checkpoint: {result['backbone']} (load it with {result['load']})")
            for line in format_zeroshot(result["zeroshot"]):
                print(line)
    acc.wait_for_everyone()
    return result


def save_pretrained_backbone(backbone: Any, name: str, folder: Path) -> tuple[str, str]:
    """Write the trained backbone; returns its path and the config that loads it as a backbone: a ``umg:``
    checkpoint folder, or the library's own state dict (open_clip) for ``model.pretrained``."""
    from ..backbones.umg import UMGBackbone
    from ..models.export import save_backbone_weights

    if isinstance(backbone, UMGBackbone):
        path = save_umg_checkpoint(backbone, folder)
        return str(path), f"model.backbone=umg:{path}"
    folder.mkdir(parents=True, exist_ok=True)
    backbone_name, pretrained = save_backbone_weights(backbone, name, folder)
    return str(pretrained), f"model.backbone={backbone_name} model.pretrained={pretrained}"


def ablation_configs(cfg: RunConfig) -> dict[str, RunConfig]:
    """Two runs, same steps and seed: image-text loss only vs the config's multi-granularity losses."""
    opts = parse_pretrain_options(cfg)
    multi = dict(opts["losses"])
    if not (multi.get("region_text") or multi.get("pixel")):
        raise ConfigError("--ablation compares image-only with image+region+pixel losses; the config has "
                          "task_options.losses region_text and pixel both 0.")
    image_only = {k: (v if k == "image_text" else 0.0) for k, v in multi.items()}
    image_only["image_text"] = image_only["image_text"] or 1.0
    out = {}
    for name, losses in (("image_only", image_only), ("multi_granularity", multi)):
        task_options = {**cfg.task_options, "losses": losses}
        out[name] = dataclasses.replace(cfg, output_dir=str(Path(cfg.output_dir) / f"ablation_{name}"),
                                        task_options=task_options)
    return out


def ablation_table(results: dict[str, dict[str, Any]]) -> str:
    """Markdown table: one row per run, the three zero-shot figures (chance in the header)."""
    keys = (("classification", "top1", "image cls top-1"), ("regions", "top1", "region cls top-1"),
            ("segmentation", "mIoU", "seg mIoU"))
    first = next(iter(results.values()))["zeroshot"]
    head = [f"{title} (chance {first[k]['chance']:.3f})" for k, _, title in keys if k in first]
    lines = ["| losses | " + " | ".join(head) + " | final train loss |",
             "| --- |" + " --- |" * (len(head) + 1)]
    for name, res in results.items():
        z = res["zeroshot"]
        cells = [f"{z[k][m]:.4f}" for k, m, _ in keys if k in z]
        loss = res["train"].get("train/loss")
        loss_cell = "-" if loss is None else f"{loss:.4f}"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {loss_cell} |")
    return "\n".join(lines)


def run_ablation(cfg: RunConfig) -> dict[str, dict[str, Any]]:
    """Both ablation runs (see `ablation_configs`); prints and writes ``<output_dir>/ablation.md``."""
    results = {name: run_pretrain(c, echo=False) for name, c in ablation_configs(cfg).items()}
    if all(r["zeroshot"] for r in results.values()):
        table = ablation_table(results)
        print(table)
        Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(cfg.output_dir) / "ablation.md", table + "\n")
    return results
