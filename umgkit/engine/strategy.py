"""What the trainer adapts to the Accelerate strategy a launch chose (DDP, FSDP2, DeepSpeed ZeRO-2/3).

The strategy comes from ``accelerate launch --config_file configs/accelerate/*.yaml``; umgkit does not
pick one. Under FSDP and DeepSpeed the optimizer state (and with FSDP / ZeRO-3 the parameters) lives in
shards, so checkpoints go through Accelerate's own state saving and the model folder is written from
full tensors gathered on the main process (`sharded_state`, `shards_parameters`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import ConfigError

__all__ = ["strategy_name", "sharded_state", "shards_parameters", "fsdp_unit_classes", "prepare_model",
           "refuse_merge_under_zero3"]


def strategy_name(accelerator: Any) -> str:
    """``"fsdp"``, ``"deepspeed"``, ``"ddp"`` (several processes, GPU or CPU) or ``"single"``."""
    from accelerate.utils import DistributedType

    kind = accelerator.distributed_type
    if kind == DistributedType.FSDP:
        return "fsdp"
    if kind == DistributedType.DEEPSPEED:
        return "deepspeed"
    return "ddp" if accelerator.num_processes > 1 else "single"


def _zero_stage(accelerator: Any) -> int:
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    return int(getattr(plugin, "zero_stage", 0) or 0) if plugin is not None else 0


def sharded_state(accelerator: Any) -> bool:
    """True when some optimizer or parameter state exists only as shards across processes."""
    return strategy_name(accelerator) in ("fsdp", "deepspeed")


def shards_parameters(accelerator: Any) -> bool:
    """True when each process holds only a shard of the parameters (FSDP, ZeRO-3)."""
    name = strategy_name(accelerator)
    return name == "fsdp" or (name == "deepspeed" and _zero_stage(accelerator) == 3)


def fsdp_unit_classes(model: nn.Module) -> list[str]:
    """Class names of the repeated layers (children of a ``ModuleList`` of one class): FSDP's units.

    FSDP2 shards each parameter on its own, so a unit may mix frozen backbone weights and trainable
    adapter weights: the frozen ones still get no gradient and no optimizer state.
    """
    names: set[str] = set()
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) > 1:
            kinds = {type(child).__name__ for child in module}
            if len(kinds) == 1:
                names |= kinds
    return sorted(names)


def prepare_model(model: nn.Module, accelerator: Any, cfg: Any) -> None:
    """Before ``accelerator.prepare``: trainable weights in float32, FSDP units, DeepSpeed clipping.

    Mixed precision (autocast, or FSDP's compute dtype) then runs in bf16/fp16 while the optimizer
    updates float32 weights; a backbone loaded in half precision keeps its frozen weights as they are.
    """
    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()
    name = strategy_name(accelerator)
    if name == "fsdp":
        model._no_split_modules = fsdp_unit_classes(model)  # read by Accelerate's auto wrap policy
    if name == "deepspeed":
        ds = accelerator.state.deepspeed_plugin.deepspeed_config
        clip = ds.get("gradient_clipping", 0.0)
        if clip not in ("auto", None) and float(clip) != float(cfg.train.clip_grad):
            raise ConfigError(f"train.clip_grad is {cfg.train.clip_grad} but the DeepSpeed config clips at "
                              f"{clip}; DeepSpeed clips inside its engine, so set gradient_clipping: "
                              f"{cfg.train.clip_grad} in the accelerate config (or 'auto').")


def refuse_merge_under_zero3() -> None:
    """Merging reads every backbone weight; under ZeRO-3 a process holds only its shard of them.

    ``accelerate launch`` tells its processes the strategy through the environment.
    """
    import os

    deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() in ("1", "true")
    if deepspeed and os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3":
        raise ConfigError("export --merge cannot run under DeepSpeed ZeRO-3 (each process holds a shard of "
                          "the backbone); run `umgkit export RUN --merge` as one plain process.")
