"""``retrieval`` task: image-text retrieval fine-tuning (symmetric InfoNCE) and R@K evaluation.

Data: a caption reader (``coco_captions`` by default, ``karpathy`` via ``data.format``) whose items are
``{"image", "captions": list[str], "image_id"}``. String values in ``data.options`` may contain
``{split}``, filled with the split being read (``annotations_file: annotations/captions_{split}.json``).
Training shows each image once per epoch with ONE of its captions, picked by a generator seeded from
``(seed, epoch, index)`` so a resumed run sees the same pairs; evaluation uses every caption (at most
``task_options.eval_captions_per_image``, 5 by default as in the COCO 5k / Flickr 1k protocol).

Task options: see ``OPTIONS`` below (no flips in training: captions name left / right).
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from ..config import DataConfig, Option, RunConfig, parse_options
from ..data.build import build_dataset
from ..data.collate import collate_dicts
from ..data.transforms import build_transforms
from ..losses import clip_loss
from ..metrics.retrieval import retrieval_metrics
from ..models import RetrievalModel, build_model
from ..registry import TASKS

__all__ = ["OPTIONS", "OneCaptionPerImage", "RetrievalTask", "build_retrieval_task", "split_options"]

OPTIONS = {
    "eval_captions_per_image": Option(5, "captions per image used in evaluation (positive int; null = all); "
                                         "5 as in the COCO 5k / Flickr30k 1k protocol"),
    "crop_scale": Option((0.5, 1.0), "train random-resized-crop area range [lo, hi]"),
}


def split_options(data: DataConfig, split: str) -> DataConfig:
    """``data`` with ``{split}`` in its string options replaced by ``split``."""
    options = {k: v.format(split=split) if isinstance(v, str) else v for k, v in data.options.items()}
    return dataclasses.replace(data, options=options)


class OneCaptionPerImage(Dataset):
    """Wraps a caption dataset: item ``{"image", "caption": str, "image_id"}`` with one caption drawn by
    ``random.Random((seed, epoch, index))``, a pure function of its arguments (resume-safe). The trainer
    does not call ``set_epoch``; without it every epoch draws with ``epoch=0``."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed, self.epoch = dataset, int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        item = self.dataset[index]
        if item is None:  # skipped bad sample: collate counts it
            return None
        captions = item.pop("captions")
        if not captions:
            raise ValueError(f"retrieval: image {item.get('image_id')} (index {index}) has no caption; "
                             "remove it from the annotations or set data.skip_bad.")
        rng = random.Random(f"{self.seed}-{self.epoch}-{index}")
        item["caption"] = captions[rng.randrange(len(captions))]
        return item



class RetrievalTask:
    """Implements `umgkit.engine.Task` for image-text retrieval (see the module docstring)."""

    def __init__(self, *, model: RetrievalModel, train_dataset: Dataset | None, val_dataset: Dataset | None,
                 eval_captions_per_image: int | None = 5) -> None:
        self.model, self.train_dataset, self.val_dataset = model, train_dataset, val_dataset
        self.collate_fn = collate_dicts
        self.eval_captions = eval_captions_per_image
        pre = getattr(model, "preprocess", None)  # any model with the RetrievalModel interface evaluates
        self.image_mean, self.image_std = (pre.mean, pre.std) if pre is not None else ((0.0,) * 3, (1.0,) * 3)

    def training_step(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        out = model(images=batch["image"], texts=batch["caption"])
        loss = clip_loss(out["image"], out["text"], out["logit_scale"])
        return {"loss": loss, "temperature": out["logit_scale"].detach().exp().reciprocal()}

    def _captions(self, batch: dict) -> list[list[str]]:
        caps = [list(c) for c in batch["captions"]]
        return [c[: self.eval_captions] for c in caps] if self.eval_captions else caps

    def evaluate(self, model: nn.Module, loader: Any, accelerator: Any) -> dict[str, float]:
        """Embed every image and caption (gathered over processes in loader order), then R@K.

        Per batch the captions are packed as ``(B, C, D)`` plus a ``(B, C)`` validity mask, so
        ``gather_for_metrics`` keeps each image's captions in its row (and drops the padding
        duplicates of the last batch for both alike); the row gives each caption its image index.
        """
        images, texts, owners = [], [], []
        seen = 0
        for batch in loader:
            caps = self._captions(batch)
            width = max([len(c) for c in caps] + [1])
            img = model(images=batch["image"])["image"]  # (B, D)
            flat = [t for c in caps for t in c]
            txt = model(texts=flat)["text"] if flat else img.new_zeros(0, img.shape[1])  # (sum C, D)
            packed = img.new_zeros(len(caps), width, img.shape[1])  # (B, C, D)
            mask = torch.zeros(len(caps), width, dtype=torch.bool, device=img.device)
            for row, c in enumerate(caps):
                mask[row, : len(c)] = True
            packed[mask] = txt.to(packed.dtype)
            packed = accelerator.pad_across_processes(packed, dim=1)
            # gloo gathers bool tensors wrongly: ship the mask as int64
            mask = accelerator.pad_across_processes(mask.long(), dim=1)
            img, packed, mask = accelerator.gather_for_metrics((img, packed, mask))
            mask = mask.bool()
            rows = torch.arange(seen, seen + img.shape[0], device=img.device)
            images.append(img.float())
            texts.append(packed[mask].float())
            owners.append(rows[:, None].expand_as(mask)[mask])
            seen += img.shape[0]
        if not images:
            return {}
        image_emb, text_emb = torch.cat(images), torch.cat(texts)
        return retrieval_metrics(image_emb @ text_emb.t(), torch.cat(owners))

    def visualise(self, model: nn.Module, batch: dict, out_dir: Path) -> list[Path]:
        """``retrieval.png``: up to 4 query captions (one per batch image) with their top-3 images."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        images = batch["image"]
        img = model(images=images)["image"]
        queries = [c[0] for c in batch["captions"][:4] if c]
        if not queries or images.shape[0] == 0:
            return []
        top = (model(texts=queries)["text"] @ img.t()).topk(min(3, img.shape[0]), dim=1).indices
        mean = torch.tensor(self.image_mean, device=images.device)[:, None, None]
        std = torch.tensor(self.image_std, device=images.device)[:, None, None]
        pictures = (images * std + mean).clamp(0, 1).permute(0, 2, 3, 1).float().cpu().numpy()
        fig, axes = plt.subplots(len(queries), top.shape[1], squeeze=False,
                                 figsize=(2.2 * top.shape[1], 2.4 * len(queries)))
        for q, query in enumerate(queries):
            for j, idx in enumerate(top[q].tolist()):
                ax = axes[q][j]
                ax.imshow(pictures[idx])
                ax.set_axis_off()
                ax.set_title(f"#{j + 1}{' (gt)' if idx == q else ''}", fontsize=8)
            axes[q][0].text(0, -0.25, query[:60], transform=axes[q][0].transAxes, fontsize=7)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "retrieval.png"
        fig.tight_layout()
        fig.savefig(path, dpi=80)
        plt.close(fig)
        return [path]


def _task_options(options: dict[str, Any]) -> dict[str, Any]:
    merged = parse_options("retrieval", OPTIONS, options)
    n = merged["eval_captions_per_image"]
    if n is not None and (not isinstance(n, int) or n < 1):
        raise ValueError(f"task_options.eval_captions_per_image={n!r}: give a positive int or null (all).")
    return merged


@TASKS.register("retrieval")
def build_retrieval_task(cfg: RunConfig, *, model: RetrievalModel | None = None,
                         train: bool = True) -> RetrievalTask:
    """Image-text retrieval on ``cfg.data`` with ``model`` (default: `build_model` from ``cfg.model``, head
    ``contrastive``). ``train=False`` reads only the val split."""
    opts = _task_options(cfg.task_options)
    model = model if model is not None else build_model(cfg)
    pre = model.preprocess
    train_set = val = None
    if train:
        train_tf = build_transforms("classification", train=True, image_size=pre.image_size, mean=pre.mean,
                                    std=pre.std, scale=tuple(opts["crop_scale"]), hflip=0.0)
        reader = build_dataset(split_options(cfg.data, cfg.data.train_split), cfg.data.train_split, train_tf,
                               "coco_captions")
        train_set = OneCaptionPerImage(reader, cfg.seed)
    if cfg.data.val_split:
        val = build_dataset(split_options(cfg.data, cfg.data.val_split), cfg.data.val_split, pre.transform(),
                            "coco_captions")
    return RetrievalTask(model=model, train_dataset=train_set, val_dataset=val,
                         eval_captions_per_image=opts["eval_captions_per_image"])
