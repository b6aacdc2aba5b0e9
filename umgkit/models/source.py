"""Where a model comes from: a run folder, a model folder, a checkpoint folder, a config file, or a
``hf-hub:ORG/NAME[@REVISION]`` name (downloaded, or read from the local cache when offline).

Below both the model folder (`umgkit.models.folder`) and the hub (`umgkit.models.hub`), which each need it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError

__all__ = ["MODEL_DIR", "HUB_PREFIX", "ModelSource", "resolve_model_source", "parse_hub_name",
           "download_model"]

MODEL_DIR = "model"
HUB_PREFIX = "hf-hub:"
_REPO = re.compile(r"^[\w.-]+/[\w.-]+$")


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from: ``kind`` is model (a model folder), run (its ``model/``), checkpoint (a
    ``step_*`` folder of a run) or config (a YAML file: a model built from the config, e.g. zero-shot)."""

    kind: str
    path: Path  # the folder or file given
    model_dir: Path | None  # the model folder holding the metadata (None for a config)


def resolve_model_source(path: str | os.PathLike | ModelSource) -> ModelSource:
    """Tell a run folder, a model folder, a checkpoint folder and a config file apart; clear errors else.
    An ``hf-hub:`` name is downloaded (or read from the cache) here; a `ModelSource` passes through, so a
    caller that looked once never looks (or downloads) again."""
    if isinstance(path, ModelSource):
        return path
    if str(path).startswith(HUB_PREFIX):
        folder = download_model(str(path))
        return ModelSource("model", folder, folder)
    p = Path(path).expanduser()
    if p.is_file():
        if p.suffix in (".yaml", ".yml"):
            return ModelSource("config", p, None)
        raise ModelError(f"{p} is a file but not a YAML config; give a run folder (OUTPUT_DIR of `umgkit "
                         "train`), its model/ folder, a checkpoint folder, or a config.yaml.")
    if not p.is_dir():
        raise ModelError(f"{p} does not exist; give a run folder (OUTPUT_DIR of `umgkit train`), its model/ "
                         "folder, a checkpoint folder (OUTPUT_DIR/checkpoints/step_*), or a config.yaml.")
    if (p / "model.json").is_file():
        return ModelSource("model", p, p)
    if (p / "trainable.safetensors").is_file() or (p / "complete").is_file():
        run = p.parent.parent
        return ModelSource("checkpoint", p, _run_model_dir(run, p))
    if (p / MODEL_DIR).is_dir() or (p / "config.yaml").is_file() or (p / "checkpoints").is_dir():
        return ModelSource("run", p, _run_model_dir(p, p))
    raise ModelError(f"{p} is neither a run folder (config.yaml, model/), a model folder (model.json) nor a "
                     "checkpoint folder (trainable.safetensors); point at the OUTPUT_DIR of `umgkit train`.")


def _run_model_dir(run: Path, given: Path) -> Path:
    folder = run / MODEL_DIR
    if not (folder / "model.json").is_file():
        raise ModelError(f"{given}: the run {run} has no model folder ({folder}/model.json). Runs write it "
                         "when `umgkit train` starts; re-run training with the current umgkit (same config, "
                         "--resume continues from its checkpoints).")
    return folder



def parse_hub_name(spec: str) -> tuple[str, str | None]:
    """``"hf-hub:ORG/NAME@REV"`` -> ``("ORG/NAME", "REV")`` (revision None when absent)."""
    name = spec[len(HUB_PREFIX):] if spec.startswith(HUB_PREFIX) else spec
    repo, _, revision = name.partition("@")
    if not _REPO.match(repo):
        raise ModelError(f"{spec!r} is not a hub model name; write hf-hub:ORG/NAME (optionally @REVISION).")
    return repo, revision or None


def download_model(spec: str) -> Path:
    """The local snapshot folder of ``hf-hub:ORG/NAME[@REV]`` (downloaded, or from the cache offline)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    from ..backbones.weights import hub_offline

    repo, revision = parse_hub_name(spec)
    offline = hub_offline()
    try:
        folder = Path(snapshot_download(repo_id=repo, revision=revision, local_files_only=offline))
    except LocalEntryNotFoundError as err:
        why, fix = (("the hub is offline (HF_HUB_OFFLINE is set)", "unset HF_HUB_OFFLINE on a machine with "
                     "network") if offline else ("the hub could not be reached", "check the network"))
        raise ModelError(f"{spec}: {why} and the model is not in the local Hugging Face cache; {fix}, or "
                         "copy the model folder here and give its path.") from err
    except (RepositoryNotFoundError, RevisionNotFoundError) as err:
        raise ModelError(f"{spec}: no such repository or revision on the hub ({type(err).__name__}); check "
                         "the name, or log in (`hf auth login`) for a private one.") from err
    except _transfer_errors() as err:
        raise ModelError(f"{spec}: the download failed ({_first_line(err)}); check the network, or copy the "
                         "model folder here and give its path.") from err
    if not (folder / "model.json").is_file():
        raise ModelError(f"{spec} is not a umgkit model (no model.json in the repository); load it with the "
                         "library it was written for.")
    return folder


def _transfer_errors() -> tuple[type[BaseException], ...]:
    """Network, HTTP and permission failures of a hub transfer (OfflineModeIsEnabled is an OSError)."""
    from ..backbones.weights import hub_transfer_errors

    return (*hub_transfer_errors(), OSError)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__).rstrip(".")
