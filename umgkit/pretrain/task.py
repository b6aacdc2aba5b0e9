"""``pretrain`` task: multi-granularity pretraining of umgkit's dual encoder on the generic engine.

Data: a manifest reader (``manifest`` by default; ``manifest_lazy`` for very large JSONL files,
``webdataset`` to stream tar shards written by ``umgkit data shards``). Each step encodes the images once
(token reduction inside the image tower, `umgkit.pretrain.model`) and, in ONE text-tower pass, the image
captions, the batch's unique region captions and (with the tag loss) its unique tags. Losses and their
config weights (``task_options.losses``; weight 0 switches a loss off and skips its work):

- ``image_text``: symmetric InfoNCE, negatives gathered across processes (``gather``);
- ``region_text``: RoIAlign-pooled box embeddings vs region captions, identical captions are positives
  of each other (ids from `caption_hash_ids`, so they agree across processes), and so is any caption
  in a region's ``captions`` list (`region_describes`: "a circle" is true of a red circle too);
- ``region_tag``: multi-label BCE of region embeddings vs the batch's tag names;
- ``sparc``: SPARC token-patch loss (patches as the last block saw them: merged tokens under reduction);
- ``pixel``: MGCA-style pixel pseudo alignment with region captions, restricted to each region's
  ground-truth mask (the manifest's RLE, else its box), on the full (unmerged) grid.

Image-text uses the backbone's ``logit_scale`` (saved in the checkpoint); each finer loss has its own
learnable log inverse temperature (``scales.*``), since patch and region similarities spread differently.
There is no validation split during training: zero-shot evaluation runs after it (`umgkit.pretrain.run`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones import create_backbone
from ..config import ConfigError, Option, RunConfig, parse_options
from ..data.build import build_dataset
from ..data.collate import collate_dicts
from ..data.transforms import build_transforms
from ..losses import process_share
from ..registry import TASKS
from . import losses as L
from .model import REDUCTIONS, PretrainModel

__all__ = ["OPTIONS", "LOSS_NAMES", "PretrainTask", "build_pretrain_task", "grid_masks", "zeroshot_templates"]

LOSS_NAMES = ("image_text", "region_text", "region_tag", "sparc", "pixel")
CAPTION_CHOICES = ("random", "first")
ZEROSHOT_KINDS = ("classification", "regions", "segmentation")

OPTIONS = {
    "losses": Option({"image_text": 1.0, "region_text": 1.0, "region_tag": 0.0, "sparc": 1.0, "pixel": 1.0},
                     f"loss weights by name ({', '.join(LOSS_NAMES)}); 0 switches a loss off"),
    "reduction": Option("cluster", f"token reduction in training: {', '.join(REDUCTIONS)}"),
    "keep_ratio": Option(0.25, "share of patch tokens kept by the reduction (0.25 = 75% reduced)"),
    "reduce_after": Option(1, "vision blocks run on all tokens before the reduction"),
    "cluster_iters": Option(None, "clustering iterations (null = token_reduction's default)"),
    "gather": Option(True, "image-text and region-text negatives from every process"),
    "captions": Option("random", "when an image or region lists several captions: 'random' draws one per "
                                 "step (as CLIP training on COCO does), 'first' always uses 'caption'"),
    "crop_scale": Option([0.9, 1.0], "train RandomResizedCrop area range (open_clip's default; no flips: "
                                     "captions say left/right)"),
    "sparc_threshold": Option(None, "SPARC similarity threshold (null = 1 / patches)"),
    "pixel_hard_negatives": Option(True, "pixel loss: other captions of the same image as hard negatives"),
    "zeroshot": Option("auto", "after training: 'auto' (the synthetic world's val split when "
                               "data.synthetic.out is set), 'none', or {classification|regions|segmentation: "
                               "{format, root, split, options}}"),
    "zeroshot_templates": Option(["a photo of a {}."],
                                 "prompt templates for class names ({} = name): one list for every "
                                 "granularity, or {classification|regions|segmentation: list} (a missing "
                                 "one uses the default)"),
    "zeroshot_batch_size": Option(64, "images per zero-shot evaluation batch"),
}


def grid_masks(masks: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Region masks ``(K, H, W)`` -> ``(K, h, w)`` bool: patch cells at least half covered; a region too
    small for that keeps every cell it touches, so no region is left without pixels."""
    if masks.shape[0] == 0:
        return torch.zeros(0, *grid, dtype=torch.bool, device=masks.device)
    frac = F.adaptive_avg_pool2d(masks.float()[:, None], grid)[:, 0]  # (K, h, w)
    out = frac >= 0.5
    empty = ~out.flatten(1).any(dim=1)
    out[empty] = frac[empty] > 0
    return out


class PretrainTask:
    """Implements `umgkit.engine.Task` for pretraining (see the module docstring)."""

    def __init__(self, *, model: PretrainModel, train_dataset, weights: dict[str, float], gather: bool = True,
                 sparc_threshold: float | None = None, pixel_hard_negatives: bool = True,
                 captions: str = "random", image_size: int = 224) -> None:
        if captions not in CAPTION_CHOICES:
            raise ValueError(f"task_options.captions={captions!r}; choose one of {list(CAPTION_CHOICES)}.")
        self.model, self.train_dataset, self.val_dataset = model, train_dataset, None
        self.captions, self.image_size = captions, int(image_size)
        self.collate_fn = collate_dicts
        self.weights = {k: float(v) for k, v in weights.items() if float(v) != 0.0}
        self.gather, self.sparc_threshold = bool(gather), sparc_threshold
        self.pixel_hard_negatives = bool(pixel_hard_negatives)

    def training_step(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        w = self.weights
        images, captions = batch["image"], self.image_captions(batch)
        b = images.shape[0]
        region_caps = self.region_captions(batch)
        need_regions = any(k in w for k in ("region_text", "region_tag", "pixel"))
        unique = list(dict.fromkeys(region_caps)) if need_regions else []
        tags = sorted({t for per in batch.get("region_tags", []) for ts in per for t in ts}) \
            if "region_tag" in w else []
        texts = captions + unique + tags
        boxes = list(batch["boxes"]) if "region_text" in w or "region_tag" in w else None
        out = model(images, texts, boxes=boxes, want_tokens="sparc" in w)
        txt, scales = out["text"], out["scales"]
        terms: dict[str, torch.Tensor] = {}
        if "image_text" in w:
            terms["image_text"] = L.image_text_loss(out["image"], txt[:b], out["logit_scale"],
                                                    gather=self.gather)
        if need_regions:
            where = {c: i for i, c in enumerate(unique)}
            idx = torch.tensor([b + where[c] for c in region_caps], dtype=torch.long, device=txt.device)
            region_txt = txt.index_select(0, idx)  # (K, D); txt[idx] backward adds in a racy order on CPU
        if "region_text" in w:
            terms["region_text"] = L.region_text_loss(
                out["region"], region_txt, scales["region"], caption_ids=L.caption_hash_ids(region_caps),
                describes=region_describes(batch, region_caps), gather=self.gather)
        if "region_tag" in w:
            rows = [[float(t in ts) for t in tags] for per in batch["region_tags"] for ts in per]
            targets = torch.tensor(rows, device=txt.device).reshape(len(region_caps), len(tags))
            terms["region_tag"] = L.region_tag_loss(out["region"], txt[b + len(unique):], targets,
                                                    scales["tag"]) \
                * process_share(len(region_caps), txt.device)
        if "sparc" in w:
            terms["sparc"] = L.sparc_loss(out["patch"], out["text_tokens"][:b], out["text_mask"][:b],
                                          scales["sparc"], threshold=self.sparc_threshold) \
                * process_share(b, txt.device)
        if "pixel" in w:
            grid, patch = out["grid"], float(model_patch_size(model))
            counts = [len(caps) for caps in batch["region_captions"]]
            image_index = torch.repeat_interleave(torch.arange(b, device=txt.device),
                                                  torch.tensor(counts, dtype=torch.long, device=txt.device))
            gboxes = torch.cat([torch.zeros(0, 4)] + [bx.reshape(-1, 4) for bx in batch["boxes"]])
            gboxes = gboxes.to(txt.device) / patch
            gmasks = torch.cat([torch.zeros(0, *grid, dtype=torch.bool, device=txt.device)]
                               + [grid_masks(m.to(txt.device), grid) for m in batch["masks"]])
            terms["pixel"] = L.pixel_alignment_loss(out["pixel"], region_txt, image_index, scales["pixel"],
                                                    boxes=gboxes, masks=gmasks,
                                                    hard_negatives=self.pixel_hard_negatives,
                                                    caption_ids=L.caption_hash_ids(region_caps)) \
                * process_share(len(region_caps), txt.device)
        # unused temperatures still join backward, so DDP never waits on a parameter without a gradient
        loss = sum(w[k] * v for k, v in terms.items()) + 0.0 * sum(s for s in scales.values())
        return {"loss": loss, **{f"loss_{k}": v.detach() for k, v in terms.items()},
                "temperature": out["logit_scale"].detach().exp().reciprocal()}

    def empty_batch(self) -> dict:
        """A batch of no image, for a process whose every sample was skipped: its step still joins the
        gathers of the contrastive losses (the trainer calls this; see `Trainer._step_output`)."""
        size = self.image_size
        lists = ("caption", "captions", "tags", "boxes", "region_captions", "region_caption_sets",
                 "region_tags", "masks", "path")
        return {"image": torch.zeros(0, 3, size, size), **{k: [] for k in lists},
                "has_mask": [], "batch_size": 0}

    def image_captions(self, batch: dict) -> list[str]:
        """One caption per image: a draw among the record's ``captions``, or its ``caption``."""
        if self.captions == "first" or "captions" not in batch:
            return list(batch["caption"])
        return [_draw(caps) for caps in batch["captions"]]

    def region_captions(self, batch: dict) -> list[str]:
        """One caption per region, flattened over the batch: as `image_captions`, per region."""
        if self.captions == "first" or "region_caption_sets" not in batch:
            return [c for caps in batch.get("region_captions", [[]] * len(batch["image"])) for c in caps]
        return [_draw(caps) for sets in batch["region_caption_sets"] for caps in sets]

    def evaluate(self, model: nn.Module, loader: Any, accelerator: Any) -> dict[str, float]:
        return {}  # zero-shot evaluation runs after training on other datasets (run_pretrain)


def region_describes(batch: dict, drawn: list[str]) -> torch.Tensor | None:
    """``(K, A)`` hash ids of the captions true of each region (its drawn one first, then its caption
    set, rows padded by repeating the first), or None when the reader gives no caption sets."""
    if "region_caption_sets" not in batch:
        return None
    sets = [caps for per_image in batch["region_caption_sets"] for caps in per_image]
    rows = [[c, *caps] for c, caps in zip(drawn, sets, strict=True)]
    width = max((len(r) for r in rows), default=1)
    ids = [L.caption_hash_ids(r + [r[0]] * (width - len(r))) for r in rows]
    return torch.stack(ids) if ids else torch.zeros((0, 1), dtype=torch.long)


def zeroshot_templates(setting: Any) -> dict[str, list[str]]:
    """``task_options.zeroshot_templates`` -> one template list per granularity.

    Separate lists exist because the granularities answer different questions: an image label may be
    "the largest thing", which an image-level prompt can say and a region prompt should not.
    """
    default = list(OPTIONS["zeroshot_templates"].default)
    per_kind = dict(setting) if isinstance(setting, dict) else dict.fromkeys(ZEROSHOT_KINDS, setting)
    unknown = sorted(set(per_kind) - set(ZEROSHOT_KINDS))
    if unknown:
        raise ConfigError(f"task_options.zeroshot_templates: unknown keys {unknown}; use "
                          f"{list(ZEROSHOT_KINDS)}, or give one list for all of them.")
    out = {}
    for kind in ZEROSHOT_KINDS:
        items = per_kind.get(kind, default)
        items = [items] if isinstance(items, str) else items
        ok = isinstance(items, (list, tuple)) and items and all(isinstance(t, str) and "{}" in t
                                                                for t in items)
        if not ok:
            raise ConfigError(f"task_options.zeroshot_templates ({kind}) = {items!r}: give a non-empty list "
                              "of prompts containing '{}' for the class name, e.g. ['a photo of a {}.'].")
        out[kind] = list(items)
    return out


def _draw(captions: list[str]) -> str:
    """A uniform draw from the global torch RNG (seeded, and restored on resume)."""
    return captions[int(torch.randint(len(captions), ()))]


def model_patch_size(model: nn.Module) -> int:
    inner = getattr(model, "module", model)  # DDP wrapper
    return inner.backbone.patch_size


def parse_pretrain_options(cfg: RunConfig) -> dict[str, Any]:
    opts = parse_options("pretrain", OPTIONS, cfg.task_options)
    losses = dict(opts["losses"] or {})
    unknown = sorted(set(losses) - set(LOSS_NAMES))
    if unknown:
        raise ConfigError(f"task 'pretrain': unknown task_options.losses {unknown}; valid: "
                          f"{list(LOSS_NAMES)}.")
    opts["losses"] = {**{k: 0.0 for k in LOSS_NAMES}, **OPTIONS["losses"].default, **losses}
    if not any(float(v) for v in opts["losses"].values()):
        raise ConfigError("task 'pretrain': every task_options.losses weight is 0; switch at least one on.")
    opts["zeroshot_templates"] = zeroshot_templates(opts["zeroshot_templates"])
    if opts["reduction"] not in REDUCTIONS:
        raise ConfigError(f"task_options.reduction={opts['reduction']!r}; choose one of {list(REDUCTIONS)}.")
    ratio = opts["keep_ratio"]
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 < ratio <= 1.0:
        raise ConfigError(f"task_options.keep_ratio={ratio!r}: give the share of patch tokens kept, a "
                          "fraction in (0, 1] (0.25 keeps a quarter).")
    return opts


@TASKS.register("pretrain")
def build_pretrain_task(cfg: RunConfig, *, model: Any = None, train: bool = True) -> PretrainTask:
    """Multi-granularity pretraining of ``cfg.model.backbone``: a ``umg:`` architecture or checkpoint, or an
    open_clip CLIP with a token image tower and a causal text tower (e.g. ``openclip:EVA02-B-16``)."""
    if model is not None or not train:
        raise ConfigError("task 'pretrain' builds and trains its own dual encoder; run it with `umgkit "
                          "pretrain CONFIG` (it prints the zero-shot figures at the end).")
    opts = parse_pretrain_options(cfg)
    if cfg.model.adapter not in ("frozen", "full"):
        raise ConfigError(f"task 'pretrain' trains the whole backbone; model.adapter={cfg.model.adapter!r} "
                          "is not supported (leave it unset).")
    with torch.random.fork_rng(devices=[]):  # seeded init, global RNG untouched
        torch.manual_seed(cfg.seed)
        backbone = create_backbone(cfg.model.backbone, pretrained=cfg.model.pretrained)
        if cfg.model.grad_checkpointing:
            backbone.set_grad_checkpointing(True)
        model = PretrainModel(backbone, reduction=opts["reduction"], keep_ratio=float(opts["keep_ratio"]),
                              reduce_after=int(opts["reduce_after"]), cluster_iters=opts["cluster_iters"])
    lo, hi = opts["crop_scale"]
    tf = build_transforms("detection", train=True, image_size=cfg.data.image_size, mean=backbone.image_mean,
                          std=backbone.image_std, scale=(float(lo), float(hi)), hflip=0.0)
    train = build_dataset(cfg.data, cfg.data.train_split, tf, "manifest")
    return PretrainTask(model=model, train_dataset=train, weights=opts["losses"], gather=bool(opts["gather"]),
                        sparc_threshold=opts["sparc_threshold"],
                        pixel_hard_negatives=bool(opts["pixel_hard_negatives"]), captions=opts["captions"],
                        image_size=cfg.data.image_size)
