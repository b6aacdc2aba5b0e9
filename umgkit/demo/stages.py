"""One demo stage = one shipped config trained through the public API, with its cost measured."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

__all__ = ["Stage", "StageResult", "run_stage", "run_pretrain_stage", "count_parameters"]


@dataclass(frozen=True)
class Stage:
    name: str  # task name, also the output sub-folder
    config: str  # file under configs/demo/
    metric: str  # headline held-out metric key returned by the task's evaluate
    label: str  # how the report names that metric
    percent: bool = False  # the metric is a fraction: show it x100
    overrides: tuple[str, ...] = ()  # dotted overrides the demo adds to the shipped config


@dataclass
class StageResult:
    stage: Stage
    metrics: dict[str, float]
    seconds: float
    trainable: int  # parameters the stage optimised
    backbone: int  # frozen backbone parameters (the base the percentage refers to)
    output_dir: Path
    world: Path | None = None  # the synthetic world the stage generated / read, when it used one
    task: Any = field(repr=False, default=None)
    pictures: list[Path] = field(default_factory=list)  # `umgkit predict` overlays of held-out images

    @property
    def value(self) -> float:
        if self.stage.metric not in self.metrics:
            raise KeyError(f"stage '{self.stage.name}' returned no '{self.stage.metric}' metric; it returned "
                           f"{sorted(self.metrics)}.")
        return self.metrics[self.stage.metric] * (100.0 if self.stage.percent else 1.0)


RERUN = ("train.overwrite=true",)  # running the demo again starts its runs over


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(trainable, frozen backbone)`` parameter counts; adapters inside the backbone count as trainable."""
    from ..backbones import Backbone

    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    backbone = next((m for m in model.modules() if isinstance(m, Backbone)), None)
    frozen = 0 if backbone is None else sum(p.numel() for p in backbone.parameters() if not p.requires_grad)
    return trainable, frozen


def run_stage(stage: Stage, config: Path, overrides: list[str]) -> StageResult:
    """Train ``config`` (+ overrides) to the end, evaluate on its held-out split, save the model folder."""
    from .._builtins import import_builtins
    from ..config import load_config
    from ..tasks.run import train_and_save

    cfg = load_config(config, [*stage.overrides, *overrides, *RERUN])
    import_builtins()
    start = time.perf_counter()
    task, metrics = train_and_save(cfg)  # ends with OUTPUT_DIR/model/, which the demo's pictures load
    trainable, frozen = count_parameters(task.model)
    seconds = time.perf_counter() - start
    world = Path(cfg.data.synthetic.out) if cfg.data.synthetic.out else None
    return StageResult(stage, metrics, seconds, trainable, frozen, Path(cfg.output_dir), world, task)


def run_pretrain_stage(stage: Stage, config: Path, overrides: list[str]) -> StageResult:
    """Pretrain as ``umgkit pretrain`` does; metrics are the zero-shot figures as ``<kind>/<name>``."""
    from safetensors import safe_open

    from .._builtins import import_builtins
    from ..config import load_config
    from ..pretrain import run_pretrain

    cfg = load_config(config, [*stage.overrides, *overrides, *RERUN])
    import_builtins()
    start = time.perf_counter()
    result = run_pretrain(cfg)
    seconds = time.perf_counter() - start
    metrics = {f"{kind}/{name}": float(value) for kind, figures in result["zeroshot"].items()
               for name, value in figures.items()}
    with safe_open(str(Path(result["backbone"]) / "model.safetensors"), "pt") as f:
        trained = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())  # every weight trains
    world = Path(cfg.data.synthetic.out) if cfg.data.synthetic.out else None
    return StageResult(stage, metrics, seconds, trained, trained, Path(cfg.output_dir), world)
