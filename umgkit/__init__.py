"""umgkit: parameter-efficient adaptation of frozen multi-granularity vision-language backbones.

``import umgkit`` stays cheap; ``umgkit.build_model`` and ``umgkit.Predictor`` import the model stack on
first use.

Example:
    >>> import umgkit
    >>> predictor = umgkit.Predictor.from_pretrained("runs/semantic")  # doctest: +SKIP
"""

from typing import Any

from .registry import ADAPTERS, BACKBONES, DATASETS, HEADS, MODELS, TASKS, Registry

__version__ = "0.1.0"

__all__ = ["ADAPTERS", "BACKBONES", "DATASETS", "HEADS", "MODELS", "TASKS", "Predictor", "Registry",
           "__version__", "build_model", "load_model"]

_LAZY = {"Predictor": "umgkit.models", "build_model": "umgkit.models", "load_model": "umgkit.models"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'umgkit' has no attribute {name!r}")
