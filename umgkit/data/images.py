"""Safe reading of images and label maps, and the errors every reader raises.

Images come back as float tensors ``(3, H, W)`` in ``[0, 1]``; label maps as ``(H, W)`` int64 tensors
holding the PNG's indices (palette indices for mode ``P``). A file that is missing, unreadable or
truncated raises `BadSampleError` naming the file; truncation is caught because Pillow refuses to
decode a truncated file while ``ImageFile.LOAD_TRUNCATED_IMAGES`` is False (its default, which umgkit
never changes).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import DatasetError

__all__ = ["DatasetError", "BadSampleError", "IGNORE_INDEX", "open_checked", "load_image", "load_label_map",
           "check_num_classes", "resolve", "read_lines"]

IGNORE_INDEX = 255  # label value that losses and metrics ignore


class BadSampleError(DatasetError):
    """One sample is unusable (missing/corrupt/truncated file, label out of range).

    With ``skip_bad=True`` readers catch it, return ``None`` for the sample and `collate_dicts` counts it.
    ``plain`` is the message without advice about dataset config keys (``data.skip_bad``), for callers
    where those do not apply (``umgkit predict`` has ``--skip-bad``); it defaults to the message.
    """

    def __init__(self, message: str = "", *, key: str | None = None, plain: str | None = None) -> None:
        super().__init__(message, key=key)
        self.plain = plain or message


def open_checked(path: Path) -> Image.Image:
    if not path.is_file():
        raise BadSampleError(f"Missing file: {path}. Restore it, fix the path in the annotations, "
                             "or set data.skip_bad=true to skip and count such samples.",
                             plain=f"Missing file: {path}. Restore it or fix the path.")
    try:
        img = Image.open(path)
        img.load()  # decodes fully; raises OSError on truncated data
    except Image.DecompressionBombError as err:
        raise BadSampleError(f"Image {path} is implausibly large ({err}). Resize or remove it.") from err
    except Exception as err:  # Pillow decoders raise OSError, SyntaxError, EOFError, struct.error, ...
        problem = f"Corrupt or truncated image: {path} ({err})."
        raise BadSampleError(f"{problem} Re-download or re-encode it, or set data.skip_bad=true to skip and "
                             "count such samples.", plain=f"{problem} Re-encode or remove it.") from err
    return img


def load_image(path: str | os.PathLike) -> torch.Tensor:
    """RGB image as float32 ``(3, H, W)`` in ``[0, 1]``; grey, palette and CMYK files are converted."""
    img = open_checked(Path(path))
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)  # (H, W, 3)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def load_label_map(path: str | os.PathLike) -> torch.Tensor:
    """Single-channel label PNG as int64 ``(H, W)``; an RGB label file is rejected (convert it first)."""
    img = open_checked(Path(path))
    if img.mode not in ("L", "P", "I", "I;16", "1"):
        raise BadSampleError(f"Label map {path} has mode {img.mode}; expected a single-channel PNG "
                             "(L or P) of class indices. Convert colour-coded labels to indices first.")
    return torch.from_numpy(np.array(img).astype(np.int64))


def check_num_classes(num_classes: int | None, class_names: list[str], where: str) -> None:
    """Raise `DatasetError` when a configured class count differs from the dataset's."""
    if num_classes is not None and int(num_classes) != len(class_names):
        shown = ", ".join(class_names[:8]) + (", ..." if len(class_names) > 8 else "")
        raise DatasetError(f"num_classes={num_classes} but {where} has {len(class_names)} classes "
                           f"({shown}). Set data.num_classes={len(class_names)} or fix the class list.")


def resolve(root: Path, value: str | os.PathLike | None, default: str) -> Path:
    """``value`` (or ``default``) as a path; relative paths are taken relative to ``root``."""
    path = Path(value if value is not None else default)
    return path if path.is_absolute() else root / path


def read_lines(path: Path) -> list[str]:
    """Non-empty stripped lines of a text file (class-name and split files)."""
    if not path.is_file():
        raise DatasetError(f"File not found: {path}. Create it (one entry per line) or fix the option.")
    return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
