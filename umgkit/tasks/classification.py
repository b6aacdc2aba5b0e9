"""``classification`` task: image classification with a linear or text-initialised head; top-1 / top-5.

Data: a classification reader (``imagefolder`` by default, ``csv`` via ``data.format``) whose items are
``{"image", "label", "path"}`` and which provides ``class_names`` (underscores become spaces in prompts).
The model is ``backbone (+ adapter) -> encode_image (B, F) -> head -> logits (B, C)``. ``data.fewshot``
(`umgkit.data.fewshot`) cuts the train split to K shots per class and both splits to the base or novel
classes; evaluating a model on other classes than its own needs an open-vocabulary head.

Task options (``task_options``): see ``OPTIONS`` below (and docs/config_reference.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, IterableDataset

from ..config import ConfigError, Option, RunConfig, parse_options
from ..data.build import build_dataset
from ..data.collate import collate_dicts
from ..data.fewshot import fewshot_splits
from ..data.transforms import build_transforms
from ..errors import at_key
from ..metrics.classification import classification_metrics, confusion_matrix
from ..models import ClassificationModel, build_model
from ..registry import ADAPTERS, TASKS
from ._feature_cache import FeatureDataset, cached_features, compute_features
from .build import class_source

__all__ = ["OPTIONS", "ClassificationTask", "build_classification_task", "init_head_from_data",
           "plot_confusion", "use_val_classes"]

OPTIONS = {
    "label_smoothing": Option(0.0, "cross-entropy label smoothing, in [0, 1)"),
    "cache_features": Option(None, "train and evaluate the head on features computed once with the eval "
                                   "transform (no train-time augmentation then); null = true exactly when "
                                   "model.adapter leaves the image features unchanged (frozen, coop, "
                                   "cocoop). Only allowed with such an adapter"),
    "cache_dir": Option(None, "feature cache folder; null = <parent of output_dir>/.feature_cache, shared "
                              "by runs kept side by side"),
    "crop_scale": Option((0.08, 1.0), "train random-resized-crop area range [lo, hi]"),
    "hflip": Option(0.5, "train horizontal-flip probability"),
}



def init_head_from_data(model: ClassificationModel, train_set: Dataset, eval_transform: Any, *,
                        batch_size: int) -> None:
    """Give a head with ``init_from_features(features (N, F), labels (N,))`` (Tip-Adapter's cache, LP++'s
    class means) the train split's features under the eval transform (no augmentation): the cached ones
    when ``train_set`` is the feature cache, else one no-grad pass of the backbone in eval mode."""
    init = getattr(model.head, "init_from_features", None)
    if init is None:
        return
    if isinstance(train_set, FeatureDataset):
        init(train_set.features, train_set.labels)
        return
    if isinstance(train_set, IterableDataset):
        raise ConfigError(f"head '{model.config.model.head if model.config else ''}' fills its rows from the "
                          "train split, which needs a map-style reader; use data.format=imagefolder or csv.")
    from accelerate import PartialState

    device = PartialState().device
    augment, train_set.transform = train_set.transform, eval_transform
    backbone = model.backbone.to(device)
    try:
        features, labels = compute_features(backbone, train_set, batch_size, device)
    finally:
        train_set.transform = augment
        backbone.to("cpu")
    init(features, labels)


def _logits(model: nn.Module, batch: dict) -> torch.Tensor:
    if "features" in batch:
        return model(features=batch["features"])
    return model(images=batch["image"])


def plot_confusion(confusion: torch.Tensor, class_names: list[str], path: Path) -> Path:
    """Write a row-normalised confusion matrix (rows = true class) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conf = confusion.double()
    norm = conf / conf.sum(dim=1, keepdim=True).clamp(min=1)
    n = conf.shape[0]
    side = min(2 + 0.4 * n, 20)
    fig, ax = plt.subplots(figsize=(side, side))
    ax.imshow(norm.numpy(), cmap="Blues", vmin=0, vmax=1)
    if n <= 40:
        ax.set_xticks(range(n), class_names[:n], rotation=90, fontsize=7)
        ax.set_yticks(range(n), class_names[:n], fontsize=7)
        for i in range(n):
            for j in range(n):
                if conf[i, j] > 0:
                    ax.text(j, i, int(conf[i, j]), ha="center", va="center", fontsize=6,
                            color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


class ClassificationTask:
    """Implements `umgkit.engine.Task` for classification (see the module docstring)."""

    def __init__(self, *, model: ClassificationModel, train_dataset: Dataset, val_dataset: Dataset | None,
                 class_names: list[str], label_smoothing: float = 0.0) -> None:
        self.model, self.train_dataset, self.val_dataset = model, train_dataset, val_dataset
        self.collate_fn = collate_dicts
        self.class_names = list(class_names)
        self.label_smoothing = float(label_smoothing)
        self.last_confusion: torch.Tensor | None = None  # (C, C) from the latest evaluate

    def training_step(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        logits = _logits(model, batch)
        labels = batch["label"].to(logits.device)
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)
        acc = (logits.detach().argmax(dim=1) == labels).float().mean()
        return {"loss": loss, "acc": acc}

    def evaluate(self, model: nn.Module, loader: Any, accelerator: Any) -> dict[str, float]:
        """Logits and labels of the whole split (gathered over processes), then top-1 / top-5 (k clipped
        to the class count) and mean per-class accuracy."""
        all_logits, all_labels = [], []
        for batch in loader:
            if not batch.get("batch_size", 1):
                continue
            logits = _logits(model, batch)
            labels = batch["label"].to(logits.device)
            logits, labels = accelerator.gather_for_metrics((logits.float(), labels))
            all_logits.append(logits.cpu())
            all_labels.append(labels.cpu())
        if not all_logits:
            return {}
        logits, labels = torch.cat(all_logits), torch.cat(all_labels)
        self.last_confusion = confusion_matrix(logits.argmax(dim=1), labels, logits.shape[1])
        return classification_metrics(logits, labels, ks=(1, 5))

    def visualise(self, model: nn.Module, batch: dict, out_dir: Path) -> list[Path]:
        """``confusion.png``: the latest evaluation's confusion matrix (or this batch's, if none yet)."""
        conf = self.last_confusion
        if conf is None:
            with torch.no_grad():
                logits = _logits(model, batch)
            conf = confusion_matrix(logits.argmax(dim=1).cpu(), batch["label"].cpu(), logits.shape[1])
        return [plot_confusion(conf.cpu(), self.class_names, Path(out_dir) / "confusion.png")]


def use_val_classes(model: ClassificationModel, val_names: list[str], fewshot_classes: str) -> None:
    """Evaluate on the val set's classes: an open-vocabulary head re-encodes ``val_names`` when they differ
    from the model's (e.g. the novel classes of a model trained on the base ones); a learned head cannot
    name classes it was not trained on, so a few-shot class split other than its own is an error."""
    if val_names == list(model.class_names):
        return
    if model.open_vocabulary:
        model.set_class_names(val_names)
    elif fewshot_classes != "all":
        shown = ", ".join(val_names[:5]) + (", ..." if len(val_names) > 5 else "")
        raise ConfigError(f"the val set's {fewshot_classes} classes ({shown}) are not the "
                          f"{len(model.class_names)} classes this model's learned (closed-vocabulary) "
                          "head was trained on; evaluate other classes with an open-vocabulary head (e.g. "
                          "model.head=text_init), or set data.fewshot.classes as it was in training.",
                          key="data.fewshot.classes")


@TASKS.register("classification")
def build_classification_task(cfg: RunConfig, *, model: ClassificationModel | None = None,
                              train: bool = True, task_cls: type[ClassificationTask] = ClassificationTask,
                              options: dict[str, Any] | None = None) -> ClassificationTask:
    """Classification on ``cfg.data`` with ``model`` (default: `build_model` from ``cfg.model``, head
    ``linear``, classes of the train split). ``train=False`` reads only the val split.

    A task that extends classification passes its `ClassificationTask` subclass as ``task_cls`` and the
    classification ``options`` it parsed out of its own (``cfg.task_options`` are parsed otherwise)."""
    opts = parse_options("classification", OPTIONS, cfg.task_options) if options is None else dict(options)
    with at_key(ADAPTERS.key):  # an unknown adapter name is reported under model.adapter
        fixed = not ADAPTERS.get(cfg.model.adapter).changes_image_features  # image features never change
    cache = fixed if opts["cache_features"] is None else bool(opts["cache_features"])
    if cache and not fixed:
        raise ValueError(f"task_options.cache_features=true needs an adapter that leaves the image features "
                         f"unchanged (frozen, coop, cocoop); '{cfg.model.adapter}' changes them while "
                         "training. Set it to false.")
    d = cfg.data
    train_set = build_dataset(d, d.train_split, None, "imagefolder") if train else None
    val = build_dataset(d, d.val_split, None, "imagefolder") if d.val_split else None
    train_set, val = fewshot_splits(d.fewshot, cfg.seed, train_set, val)  # data.fewshot: shots, classes
    fresh = model is None
    if model is None:
        names = list(getattr(class_source(cfg, train_set, val), "class_names", []))
        if not names:
            raise ConfigError(f"the {d.train_split if train else d.val_split} split of {d.root} has no "
                              "class_names; classification needs them.")
        model = build_model(cfg, names)
    if val is not None and not train:  # evaluation: the val set's classes (e.g. novel ones)
        use_val_classes(model, list(val.class_names), d.fewshot.classes)
    names = list(model.class_names)
    for split, ds in ((d.train_split, train_set), (d.val_split, val)):
        if ds is not None and len(getattr(ds, "class_names", names)) != len(names):
            raise ValueError(f"the model has {len(names)} classes but split '{split}' of {d.root} has "
                             f"{len(ds.class_names)}; every split must list the same class folders.")
    pre = model.preprocess
    eval_tf = pre.transform()
    if train_set is not None:
        train_set.transform = eval_tf if cache else build_transforms(
            "classification", train=True, image_size=pre.image_size, mean=pre.mean, std=pre.std,
            scale=tuple(opts["crop_scale"]), hflip=float(opts["hflip"]))
    if val is not None:
        val.transform = eval_tf
    if cache:
        from accelerate import PartialState

        cache_dir = opts["cache_dir"] or str(Path(cfg.output_dir).parent / ".feature_cache")
        # This process's own device (cuda:LOCAL_RANK under a launcher). One process per machine computes
        # a missing entry, the others then read it: the cache folder is per machine unless shared.
        state = PartialState()
        backbone = model.backbone.to(state.device)
        common = dict(backbone_name=cfg.model.backbone, pretrained=cfg.model.pretrained, cache_dir=cache_dir,
                      batch_size=d.eval_batch_size or d.batch_size, device=state.device)
        with state.local_main_process_first():
            train_set = cached_features(backbone, train_set, **common) if train_set is not None else None
            val = cached_features(backbone, val, **common) if val is not None else None
        backbone.to("cpu")
    if fresh and train_set is not None:
        init_head_from_data(model, train_set, eval_tf, batch_size=d.eval_batch_size or d.batch_size)
    return task_cls(model=model, train_dataset=train_set, val_dataset=val, class_names=names,
                    label_smoothing=opts["label_smoothing"])
