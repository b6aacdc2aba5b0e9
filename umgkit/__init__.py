"""umgkit: parameter-efficient adaptation of frozen multi-granularity vision-language backbones."""

from .registry import ADAPTERS, BACKBONES, DATASETS, HEADS, TASKS, Registry

__version__ = "0.1.0"

__all__ = ["ADAPTERS", "BACKBONES", "DATASETS", "HEADS", "TASKS", "Registry", "__version__"]
