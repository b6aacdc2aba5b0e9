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
    up to ``timeout_s``.
    """
    out = Path(out)
    wanted = {"num": num, "size": size, "seed": seed, "val_fraction": val_fraction, "version": WORLD_VERSION}
    if _matches(out, wanted):
        return out
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:
        generate_world(out, num=num, size=size, seed=seed, val_fraction=val_fraction)
        return out
    deadline = time.monotonic() + timeout_s
    while not _matches(out, wanted):
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout_s:.0f} s for local rank 0 to write the synthetic world at "
                               f"{out}; generate it first with `umgkit data synth --out {out}`.")
        time.sleep(0.5)
    return out


def _matches(out: Path, wanted: dict) -> bool:
    try:
        world = json.loads((out / "world.json").read_text())
    except (OSError, ValueError):
        return False
    return all(world.get(key) == value for key, value in wanted.items())
