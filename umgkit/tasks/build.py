"""`build_task`: a run config (and optionally a ready model) -> the task the engine trains or evaluates."""

from __future__ import annotations

from typing import Any

from ..config import ConfigError, RunConfig
from ..data.transforms import build_transforms
from ..engine import Task, seed_everything
from ..registry import TASKS

__all__ = ["ImageOnly", "attach_transforms", "build_task", "check_eval_classes", "class_source"]


def build_task(cfg: RunConfig, *, model: Any = None, train: bool = True) -> Task:
    """The task ``cfg.task`` around ``model`` (default: `umgkit.models.build_model` on the train split's
    classes). ``train=False`` builds only what evaluation needs: the val split, never the train split.
    Task builders take ``(cfg, *, model=None, train=True)``; the last two are passed only when set.

    Seeding happens first, so anything random a task draws while building is the same in every run and on
    every process (models draw their own init from ``cfg.seed``, see `build_model`).

    Example:
        >>> task = build_task(load_config("configs/demo/semantic.yaml"))  # doctest: +SKIP
    """
    from .._builtins import import_builtins

    import_builtins()  # every registered task, including those of optional modules such as pretrain
    seed_everything(cfg.seed)
    if model is not None and getattr(model, "task", cfg.task) != cfg.task:
        raise ConfigError(f"a {model.task} model cannot run task {cfg.task!r}; set task: {model.task}.")
    if model is None and train:  # what every task builder takes, also those written before models existed
        return TASKS.create(cfg.task, cfg=cfg)
    return TASKS.create(cfg.task, cfg=cfg, model=model, train=train)


def class_source(cfg: RunConfig, train_set: Any, val_set: Any) -> Any:
    """The split a new model takes its class names from: train when read, else val."""
    source = train_set if train_set is not None else val_set
    if source is None:
        raise ConfigError(f"task {cfg.task!r} found no split to read class names from: set data.val_split or "
                          "data.class_names, or give a trained model.")
    return source


def check_eval_classes(model: Any, val_names: list[str]) -> None:
    """Evaluation needs the model to predict the val set's classes: after an open-vocabulary head switched
    to ``val_names``, a learned head must have as many classes as the val set (one label order)."""
    if len(model.class_names) != len(val_names):
        raise ConfigError(f"the head predicts {len(model.class_names)} classes but the val set has "
                          f"{len(val_names)}; a learned classifier needs the same class set (or use head "
                          "option classifier=open_vocab to evaluate on other class names).",
                          key="model.head_options")


class ImageOnly:
    """Applies a joint transform to the image only; the label map keeps its stored size (evaluation)."""

    def __init__(self, transform) -> None:
        self.transform = transform

    def __call__(self, item: dict) -> dict:
        return {**item, "image": self.transform({"image": item["image"]})["image"]}


def attach_transforms(kind: str, model: Any, train_set: Any, val_set: Any, opts: dict[str, Any]) -> None:
    """Dense tasks: random resized crop + flip (``opts["crop_scale"]``, ``opts["hflip"]``) on the train
    split; the model's own preprocessing on the val images only (labels keep their stored size)."""
    pre = model.preprocess
    if train_set is not None:
        train_set.transform = build_transforms(kind, train=True, image_size=pre.image_size, mean=pre.mean,
                                               std=pre.std, scale=tuple(opts["crop_scale"]),
                                               hflip=float(opts["hflip"]))
    if val_set is not None:
        val_set.transform = ImageOnly(pre.transform())
