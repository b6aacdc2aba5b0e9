"""Sharing model folders through the Hugging Face Hub: ``umgkit push`` and ``hf-hub:ORG/NAME[@REVISION]``.

A pushed repository is a model folder (its ``README.md`` is the model card); ``hf-hub:`` names load it
through ``huggingface_hub.snapshot_download`` wherever a model folder is accepted (eval, predict, export,
``Predictor.from_pretrained``). Offline (``HF_HUB_OFFLINE=1``) only the local cache is read, and a name that
is not there is one clear error.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import ModelError
from .source import (
    HUB_PREFIX,
    _first_line,
    _transfer_errors,
    download_model,
    parse_hub_name,
    resolve_model_source,
)

__all__ = ["HUB_PREFIX", "parse_hub_name", "download_model", "push_model"]


def push_model(source: str | os.PathLike, repo_id: str, *, private: bool = False,
               commit_message: str | None = None, token: str | None = None) -> str:
    """Upload the model folder of ``source`` (run or model folder) to ``repo_id``; returns the commit URL.

    The folder must be loadable elsewhere: a backbone weights file outside it (e.g. a local ``umg:``
    checkpoint) is refused; ``umgkit export RUN --out DIR --merge`` writes a folder that carries it.
    """
    from huggingface_hub import HfApi

    parse_hub_name(repo_id)
    src = resolve_model_source(source)
    if src.kind not in ("model", "run"):
        raise ModelError(f"{source}: push a run or model folder (a checkpoint: `umgkit export CHECKPOINT "
                         "--out DIR` first).")
    folder = src.model_dir
    info = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    if not info.get("complete"):
        raise ModelError(f"{folder} belongs to an unfinished run; push it when training has finished.")
    weights = (info.get("backbone") or {}).get("file")
    if weights and not Path(weights).resolve().is_relative_to(folder.resolve()):
        raise ModelError(f"{folder} references backbone weights outside itself ({weights}), which nobody "
                         "downloading it would have; `umgkit export RUN --out DIR --merge` writes a folder "
                         "that carries them, or train on a backbone that loads by name.")
    token = _push_token(repo_id, token)  # before any request: offline or logged out is known here
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True)
        commit = api.upload_folder(repo_id=repo_id, repo_type="model", folder_path=str(folder),
                                   commit_message=commit_message or f"umgkit {info['task']} model")
    except _transfer_errors() as err:
        raise ModelError(f"pushing {folder} to {repo_id} failed: {_first_line(err)}. Check the network, the "
                         "repository name and that your token may write to it (`hf auth login`).") from err
    return str(getattr(commit, "commit_url", commit))


def _push_token(repo_id: str, token: str | None) -> str:
    """The token to push with; an offline hub or a missing login is one error, before any request."""
    from huggingface_hub import get_token

    from ..backbones.weights import hub_offline

    if hub_offline():
        raise ModelError(f"cannot push to {repo_id}: the hub is offline (HF_HUB_OFFLINE is set); unset "
                         "HF_HUB_OFFLINE on a machine with network and push again.")
    token = token or get_token()
    if not token:
        raise ModelError(f"cannot push to {repo_id}: no Hugging Face token; log in with `hf auth login` or "
                         "set HF_TOKEN to a token with write access.")
    return token
