"""Generate the synthetic world once and reuse it: what configs that train on it call first."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from .world import WORLD_VERSION, generate_world

__all__ = ["ensure_world"]


def ensure_world(out: str | Path, num: int, size: int = 128, seed: int = 0, val_fraction: float = 0.2,
                 timeout_s: float = 600.0) -> Path:
    """Make sure ``out`` holds a finished world with exactly these settings; return ``out``.

    A world with the same ``num/size/seed/val_fraction``, written by this world version, is reused (its
    ``world.json`` is written last, so its presence marks a finished world); anything else regenerates
    it. Under several processes only local rank 0 writes while the others wait for the finished world,
    up to ``timeout_s``. Several machines on one shared filesystem each have a local rank 0: each writes
    into a folder of its own and renames it into place, and the first finished world is kept.
    """
    out = Path(out)
    wanted = {"num": num, "size": size, "seed": seed, "val_fraction": val_fraction, "version": WORLD_VERSION}
    if _matches(out, wanted):
        return out
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:
        _generate_and_publish(out, wanted, num=num, size=size, seed=seed, val_fraction=val_fraction)
        return out
    deadline = time.monotonic() + timeout_s
    while not _matches(out, wanted):
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout_s:.0f} s for local rank 0 to write the synthetic world at "
                               f"{out}; generate it first with `umgkit data synth --out {out}`.")
        time.sleep(0.5)
    return out


def _generate_and_publish(out: Path, wanted: dict, **settings) -> None:
    import shutil
    import socket

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{socket.gethostname()}-{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    generate_world(tmp, **settings)
    if _matches(out, wanted):  # another machine published the same world first
        shutil.rmtree(tmp, ignore_errors=True)
        return
    if out.exists():  # an older or different world: moved aside, then removed
        aside = out.parent / f".{out.name}.{socket.gethostname()}-{os.getpid()}.old"
        os.replace(out, aside)
        shutil.rmtree(aside, ignore_errors=True)
    try:
        os.replace(tmp, out)
    except OSError:
        if not _matches(out, wanted):
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # lost the race to an identical world


def _matches(out: Path, wanted: dict) -> bool:
    try:
        world = json.loads((out / "world.json").read_text())
    except (OSError, ValueError):
        return False
    return all(world.get(key) == value for key, value in wanted.items())
