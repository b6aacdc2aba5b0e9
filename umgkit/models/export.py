"""`export_model`: a trained model as a folder to share, optionally with its adapter merged into the
backbone, which is then saved in its own library's format.

With ``merge=True`` (methods whose computation is a weight update: the LoRA family, lora_qv, SSF, BitFit,
and the frozen / full baselines) the adapter is folded into the frozen weights and the backbone is written
where its library reads it:

- ``openclip:NAME`` -> ``open_clip_model.safetensors``: ``open_clip.create_model(NAME, pretrained=FILE)``;
- ``timm:NAME`` -> ``model.safetensors``: ``timm.create_model(NAME, pretrained=True, num_classes=0,
  pretrained_cfg_overlay=dict(file=FILE))`` (the backbone has no classifier, hence ``num_classes=0``);
- ``umg:...`` -> ``backbone/`` (``model.safetensors`` + ``config.json``): ``create_backbone("umg:DIR")``.

The exported folder is itself a model folder whose adapter is ``frozen`` (empty) and whose config points at
the merged weights, so ``umgkit predict`` / ``Predictor.from_pretrained`` load it; inference then costs
what the plain backbone costs. Without ``merge`` the model folder is copied as is (adapter + head).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from safetensors.torch import save_file
from torch import nn

from .._io import atomic_write, check_output_folder
from ..errors import ModelError
from .base import TaskModel
from .folder import ModelSource, load_model, resolve_model_source, save_model_folder

__all__ = ["export_model", "save_backbone_weights"]


def export_model(source: str | os.PathLike, out: str | os.PathLike, *, merge: bool = False,
                 overrides: Iterable[str] = ()) -> Path:
    """Write the model of ``source`` (run, model or checkpoint folder) into ``out`` as a model folder.

    ``out`` must be new or empty and outside the source (checked before anything is written); a failed
    export removes the folder it created."""
    source = resolve_model_source(source)
    out = Path(out)
    _check_target(source, out)  # before anything is loaded or written
    model = load_model(source, overrides=overrides)
    info_file = source.model_dir / "model.json"
    metrics = json.loads(info_file.read_text(encoding="utf-8")).get("metrics") or {}
    created = not out.exists()
    try:
        return _write(model, out, merge, metrics)
    except BaseException:
        if created:  # a failed export leaves no half-written folder behind
            shutil.rmtree(out, ignore_errors=True)
        raise


def _check_target(source: ModelSource, out: Path) -> None:
    """Refuse an export folder that is the source, lies inside it, or already holds files: writing there
    would replace or mix with the trained model (a crash or ``--merge`` half way would damage it)."""
    target = out.expanduser().resolve()
    for folder in {source.path, source.model_dir} - {None}:
        folder = folder.expanduser().resolve()
        if target == folder or folder in target.parents:
            raise ModelError(f"the export folder {out} is {'' if target == folder else 'inside '}{folder}, "
                             "the source being exported; give --out a new folder outside it.")
    check_output_folder(out, "the export folder (--out)", empty=True)


def _write(model: TaskModel, out: Path, merge: bool, metrics: dict) -> Path:
    from ..adapters import merge_adapter
    from ..registry import ADAPTERS

    if not merge:
        return save_model_folder(model, out, metrics=metrics)
    adapter = model.adapter
    if adapter is not None and not adapter.mergeable:
        raise ModelError(f"adapter '{adapter.method}' cannot be merged into the backbone: its computation is "
                         "not a weight update (mergeable: lora, dora, loha, lokr, lora_qv, ssf, bitfit, "
                         "frozen, full). Export it without --merge: the folder keeps the adapter and loads "
                         "the same way.")
    if adapter is not None:
        merge_adapter(model.backbone, adapter)
    model.backbone.requires_grad_(False)  # the merged weights are the new frozen backbone
    out.mkdir(parents=True, exist_ok=True)
    backbone, pretrained = save_backbone_weights(model.backbone, model.config.model.backbone, out)
    mc = dataclasses.replace(model.config.model, backbone=backbone, pretrained=pretrained, adapter="frozen",
                             adapter_options={})
    model.config = dataclasses.replace(model.config, model=mc)
    model.adapter = ADAPTERS.build("frozen")
    return save_model_folder(model, out, metrics=metrics)


def save_backbone_weights(backbone: nn.Module, name: str, out: Path) -> tuple[str, str | None]:
    """Save a (merged) backbone in its library's format under ``out``; returns the ``(model.backbone,
    model.pretrained)`` config values that load it back."""
    from ..backbones.hf_clip import HFCLIPBackbone
    from ..backbones.openclip import OpenCLIPBackbone
    from ..backbones.timm_backbone import TimmBackbone
    from ..backbones.timm_features import TimmFeatureBackbone
    from ..backbones.umg import UMGBackbone, save_umg_checkpoint

    if isinstance(backbone, UMGBackbone):
        folder = save_umg_checkpoint(backbone, out / "backbone")
        return f"umg:{folder.resolve()}", None
    if isinstance(backbone, HFCLIPBackbone):  # transformers' own folder, tokenizer beside the weights
        folder = out / "hf_model"
        backbone.model.save_pretrained(folder)
        backbone.tokenizer.save_pretrained(folder)
        return f"hf:{folder.resolve()}", None
    if isinstance(backbone, (OpenCLIPBackbone, TimmBackbone, TimmFeatureBackbone)):
        # the library model's own state dict (for open_clip towers with a timm trunk: the whole CLIP)
        path = out / ("open_clip_model.safetensors" if name.startswith("openclip:") else "model.safetensors")
        _save_state(backbone.model, path)
        return name, str(path.resolve())
    raise ModelError(f"cannot save a merged {type(backbone).__name__} ({name}) in its library's format; "
                     "export it without --merge.")


def _save_state(module: nn.Module, path: Path) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))

