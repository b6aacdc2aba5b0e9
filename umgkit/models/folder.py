"""The model folder: what a training run leaves for eval, predict and sharing, and how it loads back.

Layout of ``OUTPUT_DIR/model/``::

    config.yaml         the resolved run config (the model is rebuilt from its ``model:`` section)
    class_names.json    the label names, in label order (tasks with classes)
    preprocess.json     input size, mean / std, resize policy and the task's inference options
    adapter/            the adapter's own weights (peft's format for the peft family; see umgkit.adapters)
    head.safetensors    the head and every other trainable weight that is not the adapter's, plus the
                        head's persistent buffers (a few-shot cache: Tip-Adapter's keys and labels)
    model.json          task, backbone reference (+ sha256), adapter, per-class metadata, metrics, complete
    README.md           model card with a Hugging Face YAML header

Frozen backbone weights are referenced, never copied: the backbone is rebuilt from the config (its
weights file, or a seeded initialisation) and checked against the sha256 recorded at save time. The
metadata files are written when training starts (``complete: false``) so that a checkpoint of an
unfinished run can be evaluated; the weights and ``complete: true`` are written at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from .._io import atomic_write, atomic_write_text, file_sha256
from .._tensors import copy_named, fit_data_sized_state, head_buffers, read_safetensors, reading_weights
from ..errors import ConfigError, ModelError
from .base import TaskModel
from .source import MODEL_DIR, ModelSource, resolve_model_source

__all__ = ["MODEL_DIR", "ModelSource", "resolve_model_source", "write_model_metadata", "save_model_folder",
           "load_model", "backbone_reference"]

FORMAT = "umgkit-model/1"
_HEAD = "head.safetensors"
_ADAPTER = "adapter"
_DAMAGED = "The folder is incomplete or damaged; copy it again from its run."


# ---------------------------------------------------------------------------------------------- saving
def write_model_metadata(model: TaskModel, directory: str | os.PathLike, *, complete: bool = False,
                         metrics: dict[str, float] | None = None) -> Path:
    """config.yaml, class_names.json, preprocess.json and model.json (no weights) into ``directory``."""
    from ..config import save_config

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    if model.config is None:
        raise ModelError("this model has no run config (model.config); build it with umgkit.build_model.")
    save_config(_portable_paths(model.config, out), out / "config.yaml")
    if model.class_names:
        atomic_write_text(out / "class_names.json", json.dumps(model.class_names, indent=1) + "\n")
    atomic_write_text(out / "preprocess.json", json.dumps(model.preprocess.to_dict(), indent=1) + "\n")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    info = {"format": FORMAT, "task": model.task, "pipeline_tag": model.pipeline_tag, "complete": complete,
            "backbone": backbone_reference(model),
            "adapter": ({"method": model.adapter.method, "options": model.adapter.options}
                        if model.adapter else None),
            "head": model.config.model.head or None, "classifier": model.classifier_kind,
            "trainable_parameters": trainable, "total_parameters": sum(p.numel() for p in model.parameters()),
            "thing_classes": model.thing_classes, "category_ids": model.category_ids,
            "metrics": dict(metrics or {}), "umgkit_version": _version()}
    atomic_write_text(out / "model.json", json.dumps(info, indent=1) + "\n")
    return out


def _portable_paths(cfg: Any, folder: Path) -> Any:
    """The config with its backbone file references made loadable from anywhere: relative to the model
    folder when the weights live inside it (an exported or downloaded folder carries them), else absolute."""
    import dataclasses

    def place(path: str) -> str:
        p = Path(path).expanduser().resolve()
        try:
            return p.relative_to(folder.resolve()).as_posix()
        except ValueError:
            return str(p)

    mc = cfg.model
    backbone, pretrained = mc.backbone, mc.pretrained
    if backbone.startswith("umg:") and Path(backbone[4:]).expanduser().exists():
        backbone = "umg:" + place(backbone[4:])
    if pretrained and Path(pretrained).expanduser().is_file():
        pretrained = place(pretrained)
    return dataclasses.replace(cfg, model=dataclasses.replace(mc, backbone=backbone, pretrained=pretrained))


def _resolve_in_folder(cfg: Any, folder: Path) -> Any:
    """Inverse of `_portable_paths`: references relative to the folder become absolute paths again."""
    import dataclasses

    mc = cfg.model
    backbone, pretrained = mc.backbone, mc.pretrained
    inside = backbone[4:]
    if backbone.startswith("umg:") and not Path(inside).is_absolute() and (folder / inside).exists():
        backbone = "umg:" + str((folder / inside).resolve())
    if pretrained and not Path(pretrained).is_absolute() and (folder / pretrained).is_file():
        pretrained = str((folder / pretrained).resolve())
    return dataclasses.replace(cfg, model=dataclasses.replace(mc, backbone=backbone, pretrained=pretrained))


def save_model_folder(model: TaskModel, directory: str | os.PathLike, *,
                      metrics: dict[str, float] | None = None) -> Path:
    """Write the whole model folder (see the module docstring) for a trained ``model``; returns it."""
    from ..adapters import save_adapter
    from .card import write_model_card

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    if model.adapter is not None:
        save_adapter(model.backbone, model.adapter, out / _ADAPTER)
    head = {n: p.detach().cpu().contiguous() for n, p in _head_state(model).items()}
    atomic_write(out / _HEAD, lambda tmp: save_file(head, tmp, metadata={"format": "pt"}))
    write_model_metadata(model, out, complete=False, metrics=metrics)
    write_model_card(out)
    info = _read_json(out / "model.json")
    info["complete"] = True  # written last: a folder without it is never loaded as a model
    atomic_write_text(out / "model.json", json.dumps(info, indent=1) + "\n")
    return out


def _head_state(model: TaskModel) -> dict[str, torch.Tensor]:
    """What head.safetensors holds: every trainable weight outside the adapter, and the head's persistent
    buffers (state a training-free head fills from data, e.g. Tip-Adapter's cache; other heads have none)."""
    return {**_non_adapter_trainable(model), **head_buffers(model)}


def _non_adapter_trainable(model: TaskModel) -> dict[str, torch.nn.Parameter]:
    owned = (lambda name: False) if model.adapter is None else model.adapter.owns
    return {n: p for n, p in model.named_parameters()
            if p.requires_grad and not (n.startswith("backbone.") and owned(n[len("backbone."):]))}


# ---------------------------------------------------------------------------------------------- loading
def load_model(path: str | os.PathLike | ModelSource, *, overrides: Iterable[str] = (),
               device: str | torch.device | None = None) -> TaskModel:
    """A trained model from a run folder, a model folder or a checkpoint folder, in eval mode.

    ``overrides`` (``key.path=value``) change the stored config before the model is rebuilt, e.g.
    ``model.pretrained=/new/place/of/weights.safetensors`` after moving the backbone file.
    """
    from ..config import load_config
    from .build import build_model

    source = resolve_model_source(path)
    if source.kind == "config":
        raise ModelError(f"{path} is a config, not a trained model; build it with "
                         "build_model(load_config(...)) or umgkit.Predictor(cfg).")
    folder = source.model_dir
    info = _read_json(folder / "model.json")
    if info.get("format") != FORMAT:
        raise ModelError(f"{folder}/model.json has format {info.get('format')!r}; this umgkit reads "
                         f"{FORMAT}.")
    if source.kind != "checkpoint" and not info.get("complete"):
        raise ModelError(f"{folder} is the model folder of a run that has not finished; evaluate one of its "
                         f"checkpoints instead (umgkit eval {folder.parent}/checkpoints/step_...).")
    if not (folder / "config.yaml").is_file():
        raise ModelError(f"{folder / 'config.yaml'} is missing; the model folder is incomplete (the model is "
                         "rebuilt from it). Copy the folder again from its run, or re-export it.")
    cfg = _resolve_in_folder(load_config(folder / "config.yaml", list(overrides)), folder)
    _check_records_agree(info, cfg, folder)
    names_file = folder / "class_names.json"
    names = _read_json(names_file) if names_file.is_file() else None
    try:
        model = build_model(cfg, names, thing_classes=info.get("thing_classes"),
                            category_ids=info.get("category_ids"))
    except ModelError:
        raise
    except ConfigError as err:
        if names is None and "class names" in str(err):  # the folder lost the file it was saved with
            raise ModelError(f"{names_file} is missing; this {cfg.task} model needs its class names. Copy "
                             "the model folder again from its run, or restore the file (a JSON list of names "
                             "in label order).") from err
        raise
    _check_backbone(model, info.get("backbone") or {}, folder)
    if source.kind == "checkpoint":
        _load_checkpoint_weights(model, source.path)
    else:
        _load_folder_weights(model, folder)
    model.eval()
    return model.to(device) if device is not None else model


def _load_folder_weights(model: TaskModel, folder: Path) -> None:
    from ..adapters.checkpoint import CONFIG_NAME, WEIGHTS_NAME, _read_method

    adapter_dir = folder / _ADAPTER
    if model.adapter is not None:
        if not (adapter_dir / WEIGHTS_NAME).is_file():
            raise ModelError(f"{adapter_dir / WEIGHTS_NAME} is missing; the model folder is incomplete "
                             "(copy it again, or re-export it from its run).")
        with reading_weights(adapter_dir / WEIGHTS_NAME, _DAMAGED):  # the header holds the method
            method, options = _read_method(adapter_dir)
        if (method, options) != (model.adapter.method, model.adapter.options):
            raise ModelError(f"{adapter_dir / CONFIG_NAME} holds adapter {method} {options}, but config.yaml "
                             f"builds {model.adapter.method} {model.adapter.options}; restore the folder's "
                             "config.yaml (or drop the model.adapter overrides).")
        model.adapter.load_adapter_state_dict(model.backbone, _read_tensors(adapter_dir / WEIGHTS_NAME))
    tensors = _read_tensors(folder / _HEAD)
    fit_data_sized_state(model, tensors)  # a data-sized head (N cached rows) takes the saved N first
    copy_named(_head_state(model), tensors, source=str(folder / _HEAD),
               fix=f"Load it with the config it was saved with ({folder / 'config.yaml'}).", error=ModelError)


def _load_checkpoint_weights(model: TaskModel, checkpoint: Path) -> None:
    path = checkpoint / "trainable.safetensors"
    if not (checkpoint / "complete").is_file() or not path.is_file():
        raise ModelError(f"{checkpoint} is not a complete checkpoint (no 'complete' marker or no "
                         "trainable.safetensors): it was interrupted while saving. Use an earlier step_*.")
    from ..engine.checkpoint import HEAD_BUFFERS

    tensors = _read_tensors(path)
    buffers = _read_tensors(checkpoint / HEAD_BUFFERS) if (checkpoint / HEAD_BUFFERS).is_file() else {}
    fit_data_sized_state(model, {**tensors, **buffers})
    fix = "Evaluate it with the config of its own run."
    copy_named({n: p for n, p in model.named_parameters() if p.requires_grad}, tensors,
               source=str(path), fix=fix, error=ModelError)
    copy_named(head_buffers(model), buffers, source=str(checkpoint / HEAD_BUFFERS), fix=fix, error=ModelError)


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    return read_safetensors(path, fix=_DAMAGED)


def _check_records_agree(info: dict[str, Any], cfg: Any, folder: Path) -> None:
    """model.json and config.yaml are written together; refuse a folder where one was edited (the
    config would silently win and build a model the metadata does not describe)."""
    recorded = {"task": info.get("task"), "head": info.get("head")}
    built = {"task": cfg.task, "head": cfg.model.head or None}
    for key, value in recorded.items():
        if key in info and value != built[key]:
            where = "task" if key == "task" else "model.head"
            raise ModelError(f"{folder / 'model.json'} records {key} {value!r} but {folder / 'config.yaml'} "
                             f"has {where}: {built[key]!r}; one of them was edited, or an override changes "
                             "it. Drop the override, or copy the model folder again from its run.")


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise ModelError(f"{path} is missing; the model folder is incomplete.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ModelError(f"{path} is not valid JSON ({err}); restore it from the run.") from err


# ---------------------------------------------------------------------------------------------- backbone
def backbone_reference(model: TaskModel) -> dict[str, Any]:
    """The frozen weights a model folder depends on: ``{"name", "pretrained", "file", "sha256"}``.

    ``file`` is the weights file when there is one (a ``pretrained`` file, a ``umg:`` checkpoint), with
    ``sha256`` of its bytes; otherwise (seeded initialisation, a library's own download) ``sha256`` is taken
    over the frozen tensors themselves and ``file`` is None.
    """
    mc = model.config.model
    file = _weights_file(mc.backbone, mc.pretrained)
    digest = file_sha256(file) if file else frozen_sha256(model)
    return {"name": mc.backbone, "pretrained": mc.pretrained, "file": str(file) if file else None,
            "sha256": digest}


def _weights_file(backbone: str, pretrained: str | None) -> Path | None:
    if pretrained and Path(pretrained).expanduser().is_file():
        return Path(pretrained).expanduser().resolve()
    if backbone.startswith("umg:"):
        p = Path(backbone[4:]).expanduser()
        if p.is_dir() and (p / "model.safetensors").is_file():
            return (p / "model.safetensors").resolve()
        if p.is_file():
            return p.resolve()
    return None




def frozen_sha256(model: TaskModel) -> str:
    """sha256 over the names, shapes, dtypes and bytes of the backbone's frozen parameters."""
    digest = hashlib.sha256()
    for name, param in sorted(model.backbone.named_parameters()):
        if param.requires_grad:
            continue
        t = param.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def _check_backbone(model: TaskModel, recorded: dict[str, Any], folder: Path) -> None:
    expected = recorded.get("sha256")
    if not expected:
        return
    actual = backbone_reference(model)
    if actual["sha256"] == expected:
        return
    if recorded.get("file"):
        where = actual["file"] or "no file"
        raise ModelError(
            f"the backbone weights differ from those {folder} was trained on: model.json records "
            f"{recorded['file']} with sha256 {expected[:16]}..., the model now loads {where} with sha256 "
            f"{actual['sha256'][:16]}.... Put the original file back, or point at it with "
            "model.pretrained=... / model.backbone=umg:... overrides.")
    raise ModelError(
        f"the frozen backbone {recorded.get('name')} rebuilt here differs from the one {folder} was trained "
        f"with (sha256 of its weights {actual['sha256'][:16]}... vs {expected[:16]}...); its seeded "
        "initialisation or library version changed. Use the torch / library versions of the run.")


def _version() -> str:
    from .. import __version__

    return __version__
