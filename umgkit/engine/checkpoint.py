"""Training checkpoints: trainable weights, optimizer, scheduler, RNG and loop position, without pickle.

Layout of ``<output_dir>/checkpoints/step_0000120/``::

    trainable.safetensors    trainable parameters only, by name (frozen backbone weights are not copied)
    optimizer.safetensors    optimizer state tensors, keys "state.<param index>.<name>" (exp_avg, step, ...)
    optimizer.json           param_groups and any non-tensor per-parameter state
    scheduler.json           the LR scheduler's state_dict (plus the fp16 grad scaler's, if any)
    trainer_state.json       step, epoch, batches consumed in the epoch, skipped-sample counts, batch layout
    rng_rank<R>.safetensors  torch / CUDA generator states of process R
    rng_rank<R>.json         Python and NumPy generator states of process R
    complete                 written last; a directory without it is never resumed from

Everything is first written into ``checkpoints/ckpt-XXXXXXXX.tmp`` and then renamed into place, so a run
killed mid-save leaves only a temp directory that `latest_checkpoint` ignores and the next save sweeps.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .._tensors import copy_named
from ._seed import capture_rng_state, restore_rng_state

__all__ = [
    "COMPLETE_MARKER",
    "save_checkpoint",
    "load_checkpoint",
    "latest_checkpoint",
    "list_checkpoints",
    "trainable_state_dict",
    "copy_trainable_tensors",
    "remove_stale_temps",
]

log = logging.getLogger(__name__)

COMPLETE_MARKER = "complete"
_STEP_DIR = re.compile(r"^step_(\d+)$")


def trainable_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """CPU copies of the parameters with ``requires_grad``, keyed by their names in ``model``."""
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def list_checkpoints(root: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints under ``root`` as ``(step, path)``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and child.is_dir() and (child / COMPLETE_MARKER).is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def latest_checkpoint(root: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint under ``root``, or None; temp and unmarked dirs are ignored."""
    found = list_checkpoints(root)
    return found[-1][1] if found else None


def remove_stale_temps(root: str | os.PathLike) -> list[Path]:
    """Delete ``ckpt-*.tmp`` directories left by a run killed while saving; returns what was removed."""
    root = Path(root)
    stale = sorted(root.glob("ckpt-*.tmp")) if root.is_dir() else []
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


def save_checkpoint(accelerator: Any, root: str | os.PathLike, *, step: int, model: nn.Module,
                    optimizer: torch.optim.Optimizer, scheduler: Any, trainer_state: dict[str, Any],
                    keep_last: int = 0) -> Path:
    """Write ``root/step_<step>`` atomically; call on every process (each saves its own RNG state).

    ``model`` may be wrapped (DDP); names are taken from the unwrapped module. ``keep_last > 0``
    removes older complete checkpoints beyond that count. Returns the checkpoint directory.
    """
    from accelerate.utils import broadcast_object_list

    root = Path(root)
    holder = [None]
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        holder[0] = tempfile.mkdtemp(prefix="ckpt-", suffix=".tmp", dir=root)
    tmp = Path(broadcast_object_list(holder, from_process=0)[0])

    rank = accelerator.process_index
    rng_tensors, rng_data = capture_rng_state()
    save_file(rng_tensors, str(tmp / f"rng_rank{rank}.safetensors"))
    _write_json(tmp / f"rng_rank{rank}.json", rng_data)
    accelerator.wait_for_everyone()

    final = root / f"step_{step:07d}"
    if accelerator.is_main_process:
        save_file(trainable_state_dict(accelerator.unwrap_model(model)), str(tmp / "trainable.safetensors"))
        opt_tensors, opt_data = _split_optimizer_state(optimizer.state_dict())
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        _write_json(tmp / "optimizer.json", opt_data)
        sched = {"scheduler": _plain(scheduler.state_dict())}
        if getattr(accelerator, "scaler", None) is not None:
            sched["grad_scaler"] = _plain(accelerator.scaler.state_dict())
        _write_json(tmp / "scheduler.json", sched)
        _write_json(tmp / "trainer_state.json", dict(trainer_state, step=step))
        _write_json(tmp / COMPLETE_MARKER, {"step": step})
        _fsync_dir(tmp)
        if final.exists():  # re-saving a step (e.g. a rerun of a finished run): replace it whole
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(root)
        if keep_last > 0:
            for _, old in list_checkpoints(root)[:-keep_last]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator: Any, path: str | os.PathLike, *, model: nn.Module,
                    optimizer: torch.optim.Optimizer, scheduler: Any,
                    restore_rng: bool = True) -> dict[str, Any]:
    """Restore everything `save_checkpoint` wrote into the given objects; returns the trainer state.

    Raises ``FileNotFoundError`` for a directory without the ``complete`` marker and ``ValueError``
    when the trainable parameters do not match the model's (names or shapes).
    """
    path = Path(path)
    if not (path / COMPLETE_MARKER).is_file():
        raise FileNotFoundError(f"{path} is not a complete checkpoint (no '{COMPLETE_MARKER}' marker): it "
                                f"was interrupted while saving. Resume from an earlier step_* directory.")
    tensors = load_file(str(path / "trainable.safetensors"))
    copy_trainable_tensors(accelerator.unwrap_model(model), tensors, path)
    opt_data = _read_json(path / "optimizer.json")
    optimizer.load_state_dict(_join_optimizer_state(load_file(str(path / "optimizer.safetensors")), opt_data))
    sched = _read_json(path / "scheduler.json")
    scheduler.load_state_dict(sched["scheduler"])
    if "grad_scaler" in sched and getattr(accelerator, "scaler", None) is not None:
        accelerator.scaler.load_state_dict(sched["grad_scaler"])
    if restore_rng:
        rank = accelerator.process_index
        rng_file = path / f"rng_rank{rank}.safetensors"
        if rng_file.is_file():
            restore_rng_state(load_file(str(rng_file)), _read_json(path / f"rng_rank{rank}.json"))
        else:  # resumed on more processes than wrote the checkpoint: this one keeps its fresh seed
            log.warning("%s has no RNG state for process %d; random draws will differ from the "
                        "interrupted run", path, rank)
    return _read_json(path / "trainer_state.json")


def copy_trainable_tensors(model: nn.Module, tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Copy ``tensors`` into ``model``'s trainable parameters; names and shapes must match exactly."""
    copy_named({n: p for n, p in model.named_parameters() if p.requires_grad}, tensors, source=str(path),
               fix="Load it into a model built with the model, adapter and head config it was written with.")


def _split_optimizer_state(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, per_param = {}, {}
    for index, entries in state["state"].items():
        plain = {}
        for key, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"state.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                plain[key] = value
        per_param[str(index)] = plain
    return tensors, _plain({"param_groups": state["param_groups"], "state": per_param})


def _join_optimizer_state(tensors: dict[str, torch.Tensor], data: dict) -> dict:
    state: dict[int, dict] = {int(i): dict(entries) for i, entries in data["state"].items()}
    for key, value in tensors.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    groups = [dict(g, betas=tuple(g["betas"])) if "betas" in g else g for g in data["param_groups"]]
    return {"state": state, "param_groups": groups}


def _plain(value: Any) -> Any:
    """JSON-ready copy; tensors become numbers/lists (a 0-d tensor in a param group, e.g. capturable lr)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if torch.is_tensor(value):
        return value.tolist()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store {type(value).__name__} value {value!r} in a JSON checkpoint file.")


def _write_json(path: Path, data: Any) -> None:
    with path.open("w", encoding="utf-8") as fh:
        json.dump(data, fh)
        fh.flush()
        os.fsync(fh.fileno())


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _fsync_dir(path: Path) -> None:
    """Best effort: make the directory entries durable (not supported on every OS / filesystem)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
