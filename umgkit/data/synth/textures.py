"""Procedural stuff textures, each a full ``(size, size, 3)`` uint8 image drawn from a numpy Generator.

Every texture is a cheap closed-form pattern plus per-pixel noise so that a stuff class is recognisable
by colour and structure (stripes, gradient, waves, grain, bricks) rather than by colour alone.
"""

from __future__ import annotations

import numpy as np

from .vocab import STUFF_CLASSES

__all__ = ["stuff_texture"]


def _finish(base: np.ndarray, shade: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    """``base`` (3,) or (H, W, 3) scaled by ``shade`` (H, W) plus Gaussian noise, as uint8."""
    img = np.asarray(base, dtype=np.float32) * shade[..., None]
    img += (rng.standard_normal(shade.shape, dtype=np.float32) * np.float32(noise))[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


def stuff_texture(stuff: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """RGB texture of stuff class ``stuff`` covering the whole canvas."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size  # (H, W) in [0, 1)
    if stuff == "sky":
        top = np.array([70, 130, 220], np.float32)
        bottom = np.array([175, 210, 245], np.float32)
        t = yy[..., None]
        base = top * (1 - t) + bottom * t
        cloud = np.sin(2 * np.pi * (xx * rng.uniform(1, 2) + rng.uniform())) * np.sin(
            2 * np.pi * (yy * rng.uniform(1, 3) + rng.uniform()))
        shade = 1.0 + 0.06 * np.clip(cloud, 0, None)
        return _finish(base, shade, rng, 2.0)
    if stuff == "grass":
        freq = rng.uniform(10, 18)
        stripes = np.sin(2 * np.pi * (xx * freq + 0.3 * yy + rng.uniform()))
        shade = 1.0 + 0.18 * stripes
        return _finish((70, 150, 55), shade, rng, 9.0)
    if stuff == "water":
        freq = rng.uniform(6, 11)
        wobble = 0.04 * np.sin(2 * np.pi * (xx * rng.uniform(2, 4) + rng.uniform()))
        waves = np.sin(2 * np.pi * ((yy + wobble) * freq + rng.uniform()))
        shade = 1.0 + 0.22 * np.clip(waves, 0.3, None)
        return _finish((35, 85, 160), shade, rng, 3.0)
    if stuff == "sand":
        ripples = np.sin(2 * np.pi * ((xx + yy) * rng.uniform(4, 7) + rng.uniform()))
        shade = 1.0 + 0.05 * ripples
        return _finish((215, 190, 140), shade, rng, 12.0)
    if stuff == "brick":
        rows = max(4, int(round(size / 10)))
        row_h = size / rows
        row = np.floor(yy * size / row_h)
        offset = (row % 2) * 0.5
        u = (xx * size / (2 * row_h) + offset) % 1.0  # bricks twice as wide as tall
        v = (yy * size / row_h) % 1.0
        mortar = (u < 0.06) | (v < 0.12)
        shade = np.where(mortar, 1.0, 1.0 + 0.08 * np.sin(row * 2.3 + rng.uniform(0, 6)))
        base = np.where(mortar[..., None], np.float32([175, 170, 160]), np.float32([160, 65, 45]))
        return _finish(base, shade.astype(np.float32), rng, 6.0)
    raise ValueError(f"Unknown stuff class '{stuff}'; expected one of {', '.join(STUFF_CLASSES)}.")
