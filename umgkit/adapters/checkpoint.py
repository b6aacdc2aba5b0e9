"""Adapter checkpoints: only the adapter's own weights, as safetensors + JSON.

Directory layout (the same names peft uses):
- ``adapter_model.safetensors``: the owned parameters. Its header metadata carries
  ``{"umgkit": {"method", "options"}}`` so umgkit can rebuild the adapter whatever the JSON format.
- ``adapter_config.json``: ``{"method", "options", "format"}``; for the peft family (lora, dora, loha,
  lokr) it is peft's own config instead, and tensor keys are peft's (``base_model.model.<path>...``), so
  ``peft.PeftModel.from_pretrained(base_model, dir)`` loads the adapter directly.

Writes are atomic per file (temp file + rename) so an interrupted save never leaves a half-written file
under the final name.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from .._io import atomic_write, atomic_write_text
from ..errors import ModelError
from ..registry import ADAPTERS
from ._base import Adapter

__all__ = ["save_adapter", "load_adapter", "WEIGHTS_NAME", "CONFIG_NAME"]

WEIGHTS_NAME = "adapter_model.safetensors"
CONFIG_NAME = "adapter_config.json"
_FORMAT = "umgkit-adapter/1"


def save_adapter(model: nn.Module, adapter: Adapter, directory: str | os.PathLike) -> Path:
    """Write ``adapter``'s weights (taken from ``model``) and config into ``directory``; returns it."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in adapter.adapter_state_dict(model).items()}
    meta = {"format": "pt", "umgkit": json.dumps({"method": adapter.method, "options": adapter.options})}
    if hasattr(adapter, "config_json"):  # peft family: peft's own config file
        config = adapter.config_json()
    else:
        config = {"method": adapter.method, "options": adapter.options, "format": _FORMAT}
    atomic_write(out / WEIGHTS_NAME, lambda tmp: save_file(tensors, tmp, metadata=meta))
    atomic_write_text(out / CONFIG_NAME, json.dumps(config, indent=2, sort_keys=True))
    return out


def load_adapter(model: nn.Module, directory: str | os.PathLike) -> Adapter:
    """Re-apply the saved method to ``model`` (in place) and load its weights bit-exactly."""
    src = Path(directory)
    for name in (WEIGHTS_NAME, CONFIG_NAME):
        if not (src / name).is_file():
            raise FileNotFoundError(f"{src / name} is missing; an adapter directory holds {WEIGHTS_NAME} "
                                    f"and {CONFIG_NAME} as written by umgkit.adapters.save_adapter.")
    method, options = _read_method(src)
    adapter = ADAPTERS.build(method, **options)
    adapter.apply(model)
    adapter.load_adapter_state_dict(model, load_file(src / WEIGHTS_NAME))
    return adapter


def _read_method(src: Path) -> tuple[str, dict[str, Any]]:
    config = json.loads((src / CONFIG_NAME).read_text())
    if "method" in config and "options" in config:
        return config["method"], config["options"]
    with safe_open(str(src / WEIGHTS_NAME), framework="pt") as f:
        meta = f.metadata() or {}
    if "umgkit" not in meta:
        raise ModelError(f"{src} holds an adapter umgkit did not write (no umgkit metadata in "
                         f"{WEIGHTS_NAME}). Load peft adapters with peft.PeftModel.from_pretrained instead.")
    info = json.loads(meta["umgkit"])
    return info["method"], info["options"]

