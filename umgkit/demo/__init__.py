"""`umgkit demo`: the synthetic world end to end (pretrain umg:tiny_conv, adapt it to five tasks, report)."""

from .pipeline import TASK_STAGES, run_demo
from .world import preview_world

__all__ = ["TASK_STAGES", "preview_world", "run_demo"]
