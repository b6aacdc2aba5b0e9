"""Example images for the page: val images of the synthetic world, generated once into a cache folder."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["example_images", "EXAMPLE_CLASSES"]

# what the synthetic world's pictures hold, as a starting vocabulary for zero-shot queries
EXAMPLE_CLASSES = "circle, square, triangle, background"


def example_images(directory: str | Path | None = None, count: int = 4) -> list[Path]:
    """``count`` val images of a small synthetic world (128 px) under ``directory`` (default: the user's
    cache folder); the world is written on first use and reused after."""
    from ..data.synth import ensure_world

    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    world = Path(directory) if directory is not None else cache / "umgkit" / "serve_examples"
    ensure_world(world, num=20, size=128, seed=0)
    return sorted((world / "coco" / "val").glob("*.png"))[:count]
