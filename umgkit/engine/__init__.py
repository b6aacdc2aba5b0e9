"""Generic training engine: an Accelerate trainer, atomic safetensors checkpoints, optimizer and logging.

The engine knows a task only through the `Task` protocol; it imports no specific task.
"""

from ._seed import seed_everything
from .checkpoint import (
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
    trainable_state_dict,
)
from .evaluate import evaluate_task, run_evaluation
from .optim import build_optimizer, build_scheduler, param_groups, warmup_cosine
from .task import Task
from .tracking import RunLogger, read_metrics
from .trainer import Trainer

__all__ = [
    "RunLogger",
    "Task",
    "Trainer",
    "build_optimizer",
    "build_scheduler",
    "evaluate_task",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "param_groups",
    "read_metrics",
    "run_evaluation",
    "save_checkpoint",
    "seed_everything",
    "trainable_state_dict",
    "warmup_cosine",
]
