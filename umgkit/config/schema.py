"""Typed schemas a run's YAML is validated into.

Each section is a small dataclass; every field has a default except where a run cannot guess one.
`umgkit.config.load_config` turns YAML (+ ``_base_`` files + dotted overrides) into ``RunConfig``.
Method-specific options (an adapter's rank, a head's decoder width) live in free-form ``options``
mappings that the component's own builder validates, so each method keeps its schema next to its code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["ModelConfig", "SynthConfig", "FewShotConfig", "DataConfig", "TrainConfig", "RunConfig", "ranged"]


def ranged(default: Any, **bounds: float) -> Any:
    """A field with bounds (``ge``, ``gt``, ``le``, ``lt``), checked when a config is validated."""
    return field(default=default, metadata=bounds)


@dataclass
class ModelConfig:
    backbone: str = "umg:tiny"  # registry string: umg:<cfg|ckpt>, openclip:<name>, timm:<name>
    pretrained: str | None = None  # local weights file (or hub tag) for the backbone
    dense: Literal["project", "value"] = "project"  # ViT patch/region embeddings: projection or value path
    adapter: str = "frozen"  # PET method name from `umgkit list adapters`
    adapter_options: dict[str, Any] = field(default_factory=dict)  # method options, e.g. {rank: 8}
    head: str = ""  # head name from `umgkit list heads`; empty = the task's default head
    head_options: dict[str, Any] = field(default_factory=dict)  # head options, checked by the head
    grad_checkpointing: bool = False  # recompute trunk activations in backward to save memory


@dataclass
class SynthConfig:
    out: str = ""  # when set, the synthetic world is generated here before reading (reused if unchanged)
    num: int = ranged(400, ge=1)  # images in the world (train + val)
    size: int = ranged(64, ge=8)  # image side, pixels
    seed: int = 0  # generator seed; the same seed writes the same bytes
    val_fraction: float = ranged(0.2, ge=0.0, lt=1.0)  # share of the images that go to the val split


@dataclass
class FewShotConfig:
    shots: int | None = ranged(None, ge=1)  # K train images per class (seeded sample); null = all
    seed: int | None = None  # shot sampler seed; null = the run's seed (same images for every method)
    classes: Literal["all", "base", "novel"] = "all"  # base = first ceil(C/2) classes, novel = the rest


@dataclass
class DataConfig:
    root: str = ""  # dataset folder (layout given by `format`)
    format: str = ""  # dataset reader name from `umgkit list datasets`; empty = the task's default
    train_split: str = "train"  # split name the reader understands
    val_split: str = "val"  # split evaluated during and after training; empty = no evaluation
    image_size: int = ranged(224, ge=1)  # square side after resizing / cropping, pixels
    num_classes: int | None = ranged(None, ge=1)  # when set, must equal the dataset's class count
    class_names: str | None = None  # optional file with one class name per line
    batch_size: int = ranged(32, ge=1)  # per process
    eval_batch_size: int | None = ranged(None, ge=1)  # per process; defaults to batch_size
    num_workers: int = ranged(0, ge=0)  # DataLoader workers per process
    skip_bad: bool = False  # skip unreadable / invalid samples, count them, report at epoch end
    limit: int | None = ranged(None, ge=0)  # use only the first N samples of each split (quick runs)
    options: dict[str, Any] = field(default_factory=dict)  # reader-specific options
    synthetic: SynthConfig = field(default_factory=SynthConfig)  # generate the built-in world first
    fewshot: FewShotConfig = field(default_factory=FewShotConfig)  # K-shot train subset, base/novel classes


@dataclass
class TrainConfig:
    epochs: int = ranged(1, ge=1)  # ignored when max_steps > 0
    max_steps: int = ranged(0, ge=0)  # optimizer steps; 0 = derive from epochs
    lr: float = ranged(1e-3, gt=0.0)  # peak learning rate of AdamW (after warmup)
    weight_decay: float = ranged(0.05, ge=0.0)  # not applied to biases, norms and other 1-D parameters
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW betas
    warmup_steps: int = ranged(0, ge=0)  # linear warmup before the cosine decay
    min_lr_ratio: float = ranged(0.0, ge=0.0, le=1.0)  # cosine decays to lr * min_lr_ratio
    grad_accum: int = ranged(1, ge=1)  # micro-batches per optimizer step
    clip_grad: float = ranged(0.0, ge=0.0)  # max global grad norm; 0 disables clipping
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"  # autocast dtype (Accelerate); "no" = fp32
    eval_every: int = ranged(0, ge=0)  # evaluate every N optimizer steps (and at the end); 0 = end only
    log_every: int = ranged(10, ge=1)  # optimizer steps between TensorBoard scalars
    save_every: int = ranged(0, ge=0)  # checkpoint every N optimizer steps (and at the end); 0 = end only
    keep_last: int = ranged(2, ge=0)  # checkpoints kept on disk
    resume: str | None = None  # "auto" = newest intact checkpoint in output_dir, or a step_* path
    overwrite: bool = False  # a fresh run may delete another run's results in output_dir (else: error)
    progress: bool = True  # tqdm bar on the main process


@dataclass
class RunConfig:
    task: str = field(default="", metadata={"required": True})  # name from `umgkit list tasks`
    output_dir: str = "runs/default"  # resolved config, logs, checkpoints and pictures go here
    seed: int = 0  # seeds model init, data order and augmentation on every process
    model: ModelConfig = field(default_factory=ModelConfig)  # backbone, adapter and head
    data: DataConfig = field(default_factory=DataConfig)  # dataset, reader and loader
    train: TrainConfig = field(default_factory=TrainConfig)  # optimiser, schedule, checkpoints
    task_options: dict[str, Any] = field(default_factory=dict)  # options the task itself validates
