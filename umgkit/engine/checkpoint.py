"""Training checkpoints: trainable weights, optimizer, scheduler, RNG and loop position, without pickle.

Layout of ``<output_dir>/checkpoints/step_0000120/``::

    trainable.safetensors    trainable parameters only, by name (frozen backbone weights are not copied)
    optimizer.safetensors    optimizer state tensors, keys "state.<param index>.<name>" (exp_avg, step, ...)
    optimizer.json           param_groups and any non-tensor per-parameter state
    scheduler.json           the LR scheduler's state_dict (plus the fp16 grad scaler's, if any)
    trainer_state.json       step, epoch, batches consumed in the epoch, skipped-sample counts, batch layout
    head_buffers.safetensors only for a head with persistent buffers (a few-shot cache such as Tip-Adapter's
                             keys and labels): state that is not trained but makes the predictions
    accelerate/              under FSDP / DeepSpeed only: Accelerate's save_state (model shards as
                             safetensors, optimizer shards) in place of optimizer.*; trainable.safetensors
                             then holds the full trainable tensors gathered on the main process
    rng_rank<R>.safetensors  torch / CUDA generator states of process R
    rng_rank<R>.json         Python and NumPy generator states of process R
    complete                 written last: the step and the sha256 of every other file

Everything is first written into ``checkpoints/ckpt-XXXXXXXX.tmp`` and then renamed into place, so a run
killed mid-save leaves only a temp directory that `latest_checkpoint` ignores and the next save sweeps. A
step saved again replaces the old folder only once the new one is complete (the old one is renamed aside
first, then deleted). Resuming checks a checkpoint before trusting it (`checkpoint_problem`: marker,
files, checksums, readable headers) and falls back to the newest one that passes (`find_resumable`).

The detectron2 and mmseg bridges write the same folders through `write_state_files` + `publish_checkpoint`
and read them with `restore_state_files` (see `umgkit.integrations._checkpoint`): one writer for all.
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
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from .._io import file_sha256
from .._tensors import copy_named, fit_data_sized_state, head_buffers, read_safetensors
from ..errors import CheckpointError
from ._seed import capture_rng_state, restore_rng_state
from .strategy import sharded_state, strategy_name

__all__ = [
    "COMPLETE_MARKER",
    "HEAD_BUFFERS",
    "save_checkpoint",
    "load_checkpoint",
    "latest_checkpoint",
    "list_checkpoints",
    "checkpoint_problem",
    "find_resumable",
    "trainable_state_dict",
    "gathered_trainable",
    "split_optimizer_state",
    "join_optimizer_state",
    "json_ready",
    "publish_checkpoint",
    "write_state_files",
    "restore_state_files",
    "copy_trainable_tensors",
    "remove_stale_temps",
]

log = logging.getLogger(__name__)

COMPLETE_MARKER = "complete"
_STEP_DIR = re.compile(r"^step_(\d+)$")
_ASIDE = ".replaced"  # suffix of a step folder moved aside while its step is saved again
_REQUIRED = ("trainable.safetensors", "optimizer.safetensors", "optimizer.json", "scheduler.json",
             "trainer_state.json")
SHARDED_DIR = "accelerate"  # Accelerate's save_state under FSDP / DeepSpeed (model and optimizer shards)
_REQUIRED_SHARDED = ("trainable.safetensors", "scheduler.json", "trainer_state.json")
HEAD_BUFFERS = "head_buffers.safetensors"  # optional: the head's persistent buffers (`head_buffers`)


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
    """Delete what a run killed while saving left behind: ``ckpt-*.tmp`` directories, and step folders
    moved aside for a re-save whose replacement is complete. Returns what was removed."""
    root = Path(root)
    if not root.is_dir():
        return []
    stale = sorted(root.glob("ckpt-*.tmp"))
    stale += [p for p in sorted(root.glob(f"step_*{_ASIDE}"))
              if (root / p.name.removesuffix(_ASIDE) / COMPLETE_MARKER).is_file()]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


def checkpoint_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be resumed from (one phrase), or None when it can.

    Checks the ``complete`` marker, that every file is present, the sha256 recorded at save time (when
    the marker has them; older checkpoints do not), and that every safetensors header and JSON file reads.
    """
    path = Path(path)
    if not path.is_dir():
        return "it does not exist" if not path.exists() else "it is not a folder"
    marker = path / COMPLETE_MARKER
    if not marker.is_file():
        return f"no '{COMPLETE_MARKER}' marker (the save was interrupted, or this is not a checkpoint)"
    try:
        recorded = _read_json(marker)
    except (OSError, ValueError):
        return f"its '{COMPLETE_MARKER}' marker is damaged"
    sums = recorded.get("sha256", {}) if isinstance(recorded, dict) else {}
    required = _REQUIRED_SHARDED if (path / SHARDED_DIR).is_dir() else _REQUIRED
    for name in sorted(set(required) | set(sums)):
        file = path / name
        if not file.is_file():
            return f"{name} is missing"
        if name in sums and file_sha256(file) != sums[name]:
            return f"{name} does not match the checksum recorded when it was saved"
        try:
            if name.endswith(".safetensors"):
                with safe_open(str(file), framework="pt"):
                    pass
            elif name.endswith(".json"):
                _read_json(file)
        except Exception as err:  # noqa: BLE001  any reader error means the same: unusable
            return f"{name} cannot be read ({type(err).__name__}: {str(err)[:80]})"
    return None


def find_resumable(root: str | os.PathLike) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest checkpoint under ``root`` that `checkpoint_problem` passes, and the newer ones it skipped
    (``(path, why)``, newest first). Step folders moved aside by an interrupted re-save count too."""
    root = Path(root)
    candidates = []
    if root.is_dir():
        for child in root.iterdir():
            match = _STEP_DIR.match(child.name.removesuffix(_ASIDE))
            if match and child.is_dir():
                candidates.append((int(match.group(1)), child.name.endswith(_ASIDE), child))
    skipped = []
    for _, _, path in sorted(candidates, reverse=True):  # newest step first; a step's own folder first
        problem = checkpoint_problem(path)
        if problem is None:
            return path, skipped
        skipped.append((path, problem))
    return None, skipped


def save_checkpoint(accelerator: Any, root: str | os.PathLike, *, step: int, model: nn.Module,
                    optimizer: torch.optim.Optimizer, scheduler: Any, trainer_state: dict[str, Any],
                    keep_last: int = 0) -> Path:
    """Write ``root/step_<step>`` atomically; call on every process (each process's RNG state is saved).

    ``model`` may be wrapped (DDP); names are taken from the unwrapped module. ``keep_last > 0``
    removes older complete checkpoints beyond that count. Returns the checkpoint directory.
    """
    from accelerate.utils import broadcast_object_list, gather_object

    root = Path(root)
    holder = [None]
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        holder[0] = tempfile.mkdtemp(prefix="ckpt-", suffix=".tmp", dir=root)
    tmp = Path(broadcast_object_list(holder, from_process=0)[0])

    # Every process's RNG state travels to the main one, which writes all files: only the main process
    # needs to reach the checkpoint folder (processes on other machines need not share its filesystem).
    rng_states = gather_object([capture_rng_state()]) if accelerator.num_processes > 1 \
        else [capture_rng_state()]
    sharded = sharded_state(accelerator)
    if sharded:  # shards of model / optimizer: Accelerate writes them (every process, safetensors model)
        trainable = gathered_trainable(accelerator, model)
        accelerator.save_state(str(tmp / SHARDED_DIR), safe_serialization=True)
    accelerator.wait_for_everyone()

    final = root / f"step_{step:07d}"
    if accelerator.is_main_process:
        for rank, (rng_tensors, rng_data) in enumerate(rng_states):
            save_file(rng_tensors, str(tmp / f"rng_rank{rank}.safetensors"))
            _write_json(tmp / f"rng_rank{rank}.json", rng_data)
        if not sharded:
            trainable = trainable_state_dict(accelerator.unwrap_model(model))
        buffers = head_buffers(accelerator.unwrap_model(model))
        buffers = {n: t.detach().cpu().contiguous() for n, t in buffers.items()}
        if buffers:
            save_file(buffers, str(tmp / HEAD_BUFFERS))
        sched = {"scheduler": json_ready(scheduler.state_dict())}
        if getattr(accelerator, "scaler", None) is not None:
            sched["grad_scaler"] = json_ready(accelerator.scaler.state_dict())
        write_state_files(tmp, trainable=trainable, optimizer=None if sharded else optimizer,
                          scheduler_state=sched, trainer_state=dict(trainer_state, step=step))
        publish_checkpoint(tmp, root, step, keep_last=keep_last)
    accelerator.wait_for_everyone()
    return final


def publish_checkpoint(tmp: Path, root: Path, step: int, *, keep_last: int = 0) -> Path:
    """Seal the filled folder ``tmp`` (the ``complete`` marker with every file's sha256) and rename it to
    ``root/step_<step>``; a step saved again keeps its old folder aside until the new one is in place.
    ``keep_last > 0`` then removes older complete checkpoints beyond that count. Returns the final path."""
    final = root / f"step_{step:07d}"
    sums = {f.name: file_sha256(f) for f in sorted(tmp.iterdir()) if f.is_file()}
    _write_json(tmp / COMPLETE_MARKER, {"step": step, "sha256": sums})
    _fsync_dir(tmp)
    aside = root / f"{final.name}{_ASIDE}"
    if final.exists():
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(final, aside)
    os.replace(tmp, final)
    _fsync_dir(root)
    shutil.rmtree(aside, ignore_errors=True)
    if keep_last > 0:
        for _, old in list_checkpoints(root)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def write_state_files(folder: Path, *, trainable: dict[str, torch.Tensor],
                      optimizer: torch.optim.Optimizer | None, scheduler_state: dict[str, Any],
                      trainer_state: dict[str, Any]) -> None:
    """Fill a checkpoint folder with what every step folder holds: ``trainable.safetensors``,
    ``optimizer.safetensors`` + ``optimizer.json`` (skipped for ``optimizer=None``: under FSDP / DeepSpeed
    Accelerate writes the optimizer shards), ``scheduler.json`` and ``trainer_state.json``.

    The engine and both framework bridges write through here and seal with `publish_checkpoint`, so one
    layout (and one reader, `restore_state_files`) serves them all; ``trainer_state`` must hold ``step``.
    """
    save_file(trainable, str(folder / "trainable.safetensors"))
    if optimizer is not None:
        opt_tensors, opt_data = split_optimizer_state(optimizer.state_dict())
        save_file(opt_tensors, str(folder / "optimizer.safetensors"))
        _write_json(folder / "optimizer.json", opt_data)
    _write_json(folder / "scheduler.json", json_ready(scheduler_state))
    _write_json(folder / "trainer_state.json", json_ready(trainer_state))


def restore_state_files(path: str | os.PathLike, *, model: nn.Module,
                        optimizer: torch.optim.Optimizer | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Copy a step folder's trainable tensors into ``model`` and, unless ``optimizer`` is None, its saved
    state (Adam's moments, step counts, param groups) into ``optimizer``; returns ``(scheduler state,
    trainer state)`` as saved, for the caller's own scheduler and loop. The folder is checked first
    (`checkpoint_problem`); `CheckpointError` names what is wrong, or a parameter that does not fit."""
    path = Path(path)
    _check_resumable(path)
    _restore_weights_and_optimizer(path, model, optimizer)
    return _read_json(path / "scheduler.json"), _read_json(path / "trainer_state.json")


def _restore_weights_and_optimizer(path: Path, model: nn.Module,
                                   optimizer: torch.optim.Optimizer | None) -> None:
    tensors = read_safetensors(path / "trainable.safetensors")
    buffers = read_safetensors(path / HEAD_BUFFERS) if (path / HEAD_BUFFERS).is_file() else {}
    fit_data_sized_state(model, {**tensors, **buffers})  # a few-shot cache takes its saved size first
    copy_trainable_tensors(model, tensors, path)
    if buffers or head_buffers(model):
        copy_named(head_buffers(model), buffers, source=str(path / HEAD_BUFFERS),
                   fix="Load it into a model built with the head config it was written with.",
                   error=CheckpointError)
    if optimizer is not None:
        optimizer.load_state_dict(join_optimizer_state(read_safetensors(path / "optimizer.safetensors"),
                                                       _read_json(path / "optimizer.json")))


def _check_resumable(path: Path) -> None:
    problem = checkpoint_problem(path)
    if problem is not None:
        raise CheckpointError(f"cannot resume from {path}: {problem}. Give a complete checkpoints/step_* "
                              "folder, or let train.resume=auto (the bridges: --resume) pick the newest "
                              "one that is intact.")


def load_checkpoint(accelerator: Any, path: str | os.PathLike, *, model: nn.Module,
                    optimizer: torch.optim.Optimizer, scheduler: Any,
                    restore_rng: bool = True) -> dict[str, Any]:
    """Restore everything `save_checkpoint` wrote into the given objects; returns the trainer state.

    Raises `CheckpointError` for a folder `checkpoint_problem` rejects, or whose trainable parameters do
    not match the model's (names or shapes).
    """
    path = Path(path)
    _check_resumable(path)
    if (path / SHARDED_DIR).is_dir() != sharded_state(accelerator):
        saved = "a sharded strategy (FSDP / DeepSpeed)" if (path / SHARDED_DIR).is_dir() \
            else "DDP or one process"
        raise CheckpointError(f"{path} was written under {saved} and this run uses "
                              f"{strategy_name(accelerator)}; resume with the accelerate config it was "
                              "trained with.")
    if (path / SHARDED_DIR).is_dir():
        accelerator.load_state(str(path / SHARDED_DIR))
    else:
        _restore_weights_and_optimizer(path, accelerator.unwrap_model(model), optimizer)  # checked above
    sched = _read_json(path / "scheduler.json")
    scheduler.load_state_dict(sched["scheduler"])
    if "grad_scaler" in sched and getattr(accelerator, "scaler", None) is not None:
        accelerator.scaler.load_state_dict(sched["grad_scaler"])
    if restore_rng:
        rank = accelerator.process_index
        rng_file = path / f"rng_rank{rank}.safetensors"
        if rng_file.is_file():
            restore_rng_state(read_safetensors(rng_file), _read_json(path / f"rng_rank{rank}.json"))
        else:  # resumed on more processes than wrote the checkpoint: this one keeps its fresh seed
            log.warning("%s has no RNG state for process %d; random draws will differ from the "
                        "interrupted run", path, rank)
    return _read_json(path / "trainer_state.json")


def gathered_trainable(accelerator: Any, model: nn.Module) -> dict[str, torch.Tensor]:
    """Full trainable tensors on the main process (a collective: call on every process)."""
    names = {n for n, p in accelerator.unwrap_model(model).named_parameters() if p.requires_grad}
    full = accelerator.get_state_dict(model)  # gathers shards (FSDP full state dict, ZeRO-3 16-bit)
    if not accelerator.is_main_process:
        return {}
    return {n: t.detach().cpu().contiguous() for n, t in full.items() if n in names}


def copy_trainable_tensors(model: nn.Module, tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Copy ``tensors`` into ``model``'s trainable parameters; names and shapes must match exactly."""
    copy_named({n: p for n, p in model.named_parameters() if p.requires_grad}, tensors, source=str(path),
               fix="Load it into a model built with the model, adapter and head config it was written with.",
               error=CheckpointError)


def split_optimizer_state(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimizer ``state_dict`` -> (tensors for safetensors, the JSON rest); `join_optimizer_state`
    puts them back together."""
    tensors, per_param = {}, {}
    for index, entries in state["state"].items():
        plain = {}
        for key, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"state.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                plain[key] = value
        per_param[str(index)] = plain
    return tensors, json_ready({"param_groups": state["param_groups"], "state": per_param})


def join_optimizer_state(tensors: dict[str, torch.Tensor], data: dict) -> dict:
    state: dict[int, dict] = {int(i): dict(entries) for i, entries in data["state"].items()}
    for key, value in tensors.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    groups = [dict(g, betas=tuple(g["betas"])) if "betas" in g else g for g in data["param_groups"]]
    return {"state": state, "param_groups": groups}


def json_ready(value: Any) -> Any:
    """JSON-ready copy; tensors become numbers/lists (a 0-d tensor in a param group, e.g. capturable lr)."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
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
