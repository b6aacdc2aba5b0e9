"""Shared rules for ``pretrained=``: local files vs hub tags, and the offline error people see."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import WeightsError

__all__ = ["WEIGHT_SUFFIXES", "is_local_path", "check_local_file", "hub_offline", "offline_error"]

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def is_local_path(pretrained: str) -> bool:
    """True when ``pretrained`` names a file (exists, has a weight suffix or a path separator)."""
    return (os.path.exists(pretrained) or pretrained.endswith(WEIGHT_SUFFIXES)
            or os.sep in pretrained or "/" in pretrained)


def check_local_file(pretrained: str, backbone: str) -> str:
    if not Path(pretrained).is_file():
        raise WeightsError(f"{backbone}: pretrained weights file '{pretrained}' does not exist; "
                           f"give an existing {'/'.join(WEIGHT_SUFFIXES)} file.")
    return str(pretrained)


def hub_offline() -> bool:
    """True when the Hugging Face hub is switched off (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``)."""
    return any(os.environ.get(v, "").strip().upper() in {"1", "ON", "YES", "TRUE"}
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def offline_error(backbone: str, tag: str, example: str, cause: BaseException | None = None) -> WeightsError:
    why = "the hub is offline (HF_HUB_OFFLINE is set)" if cause is None else f"the download failed ({cause})"
    return WeightsError(f"{backbone}: pretrained='{tag}' is a hub name, but {why}; give a local file with "
                        f"model.pretrained=/path/to/{example}.safetensors")
