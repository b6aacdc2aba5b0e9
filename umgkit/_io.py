"""Atomic file writes (a reader, or a resumed run, never sees half a file), file checksums, and the check
that an output folder can be written before anything is (a path below a file used to end in a traceback
half way through a command)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import ConfigError

__all__ = ["atomic_write", "atomic_write_text", "file_sha256", "check_output_folder"]


def atomic_write(path: str | os.PathLike, write: Callable[[str], object]) -> Path:
    """Call ``write(tmp_path)`` on a temp file beside ``path``, then rename it over ``path``.

    The rename is atomic on one file system, so ``path`` holds either the old or the new content; the
    temp file is removed if ``write`` fails.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in blocks (weights files can be gigabytes)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def check_output_folder(path: str | os.PathLike, name: str, *, empty: bool = False) -> Path:
    """Refuse, before anything is written, an output folder ``path`` (given as ``name``, e.g. ``--out``)
    that is a file, lies below a file, or (``empty=True``) already holds files. Creates nothing."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{name} {path} is a file, not a folder; give a folder path (it is created when "
                          f"missing).")
    for parent in path.parents:  # the nearest existing ancestor must be a folder
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{name} {path} lies below {parent}, which is a file; give a folder path "
                                  f"outside it.")
            break
    if empty and path.is_dir():
        held = sorted(p.name for p in path.iterdir())
        if held:
            shown = ", ".join(held[:5]) + (f" (+{len(held) - 5} more)" if len(held) > 5 else "")
            raise ConfigError(f"{name} {path} already holds files ({shown}); give a new or empty folder, so "
                              f"nothing there is replaced or mixed in.")
    return path
