"""One synthetic scene: stuff background regions, occluding thing shapes, and their visible masks.

A scene depends only on ``(seed, index, size, dominant_shape)``: its numpy Generator is seeded with
``[seed, index]``, so images can be drawn in any order or in parallel and still be identical.

Promises:
- things are listed in painting order (bottom first); a later thing occludes earlier ones and each
  `Thing.mask` holds exactly its visible pixels (the masks of a scene never overlap);
- a thing whose visible area would fall below `min_visible_area` is not drawn at all, so every pixel
  of the image belongs to a listed thing or to a stuff region;
- a stuff region whose visible area falls below `min_visible_area` is still drawn but left out of
  `Scene.stuff` (its pixels are void in the panoptic / ADE labels);
- the largest visible thing (first one on ties) has shape ``dominant_shape``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .shapes import shape_mask
from .textures import stuff_texture
from .vocab import COLOUR_NAMES, COLOURS, STUFF_CLASSES, THING_CLASSES

__all__ = ["Thing", "StuffRegion", "Scene", "draw_scene", "min_visible_area", "mask_box"]

MAX_OBJECTS = 4
_MAX_ATTEMPTS = 40  # rejection sampling for the dominant shape; acceptance is ~50%, so 40 never runs out
_RADIUS = (0.10, 0.26)  # thing radius as a fraction of the image side
_FORCED_MIN_RADIUS = 0.14
_COUNT_WEIGHTS = (0.1, 0.2, 0.3, 0.4)  # chance of asking for 1, 2, 3, 4 things


def min_visible_area(size: int) -> int:
    """Smallest visible area (pixels) a thing or stuff segment keeps: 1% of the image, at least 16 px."""
    return max(16, math.ceil(0.01 * size * size))


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Tight box of a non-empty mask as absolute XYXY pixel edges (``x2 = last column + 1``)."""
    cols = np.flatnonzero(mask.any(axis=0))
    rows = np.flatnonzero(mask.any(axis=1))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


@dataclass(frozen=True)
class Thing:
    """A visible thing: its shape class, colour name, visible-pixel mask ``(H, W)`` bool and its box."""

    shape: str
    colour: str
    mask: np.ndarray
    box: tuple[int, int, int, int]  # absolute XYXY pixel edges of the visible pixels (`mask_box`)

    @property
    def area(self) -> int:
        return int(self.mask.sum())

    @property
    def centre(self) -> tuple[float, float]:
        """Centre ``(x, y)`` of `box`, used for relative positions in captions."""
        x1, y1, x2, y2 = self.box
        return (x1 + x2) / 2.0, (y1 + y2) / 2.0


@dataclass(frozen=True)
class StuffRegion:
    """A visible stuff segment: its class and visible-pixel mask ``(H, W)`` bool."""

    stuff: str
    mask: np.ndarray

    @property
    def area(self) -> int:
        return int(self.mask.sum())


@dataclass(frozen=True)
class Scene:
    """A rendered scene; see the module docstring for what the fields promise."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    things: tuple[Thing, ...]  # painting order, bottom first
    stuff: tuple[StuffRegion, ...]  # upper region first
    layout: tuple[str, ...]  # stuff classes of the background (upper, lower), visible or not

    @property
    def dominant(self) -> Thing:
        """The thing with the largest visible area (the first on ties)."""
        return self.things[int(np.argmax([t.area for t in self.things]))]


def _sample_things(rng: np.random.Generator, size: int, dominant_shape: str):
    """Place 1..MAX_OBJECTS shapes and keep the visible ones.

    Returns ``[(shape, colour, full_mask, visible_mask, cx, cy, r)]`` in painting order.
    """
    min_area = min_visible_area(size)
    for _ in range(_MAX_ATTEMPTS):
        # More objects are asked for than kept: occlusion drops some and the dominance test rejects
        # crowded scenes more often, so these weights give roughly even counts of 1..4 visible things.
        n = int(rng.choice(MAX_OBJECTS, p=_COUNT_WEIGHTS)) + 1
        forced = int(rng.integers(n))
        specs = []
        for k in range(n):
            shape = dominant_shape if k == forced else THING_CLASSES[int(rng.integers(len(THING_CLASSES)))]
            colour = COLOUR_NAMES[int(rng.integers(len(COLOUR_NAMES)))]
            low = _FORCED_MIN_RADIUS if k == forced else _RADIUS[0]  # a large forced shape is accepted sooner
            r = size * float(rng.uniform(low, _RADIUS[1]))
            # Centres may sit half a radius from the border so some shapes are cut by the frame.
            cx, cy = (float(v) for v in rng.uniform(0.5 * r, size - 0.5 * r, size=2))
            specs.append((shape, colour, cx, cy, r))
        covered = np.zeros((size, size), dtype=bool)
        kept = []
        for shape, colour, cx, cy, r in reversed(specs):  # top first: visibility depends on kept upper ones
            full = shape_mask(shape, cx, cy, r, size)
            visible = full & ~covered
            if visible.sum() < min_area:
                continue  # never drawn, so it cannot leave unlabelled pixels behind
            kept.append((shape, colour, full, visible, cx, cy, r))
            covered |= full
        kept.reverse()
        if kept and kept[int(np.argmax([v.sum() for _, _, _, v, *_ in kept]))][0] == dominant_shape:
            return kept
    # Fallback (practically unreachable): one centred shape of the asked class.
    r = size * _RADIUS[1]
    full = shape_mask(dominant_shape, size / 2, size / 2, r, size)
    return [(dominant_shape, COLOUR_NAMES[0], full, full, size / 2, size / 2, r)]


def _sample_layout(rng: np.random.Generator, size: int) -> tuple[tuple[str, ...], np.ndarray]:
    """Background classes (upper, lower) and the ``(H, W)`` region index map (0 = upper)."""
    if rng.random() < 0.5:
        return (STUFF_CLASSES[int(rng.integers(len(STUFF_CLASSES)))],), np.zeros((size, size), np.int64)
    a, b = (STUFF_CLASSES[int(i)] for i in rng.choice(len(STUFF_CLASSES), size=2, replace=False))
    if b == "sky":
        a, b = b, a  # sky belongs on top
    y0 = size * rng.uniform(0.35, 0.65)
    amp = size * rng.uniform(0.0, 0.06)
    waves, phase = rng.uniform(0.5, 2.0), rng.uniform()
    xs = np.arange(size, dtype=np.float64)
    boundary = y0 + amp * np.sin(2 * np.pi * (xs / size * waves + phase))  # (W,)
    lower = np.arange(size)[:, None] >= boundary[None, :]
    return (a, b), lower.astype(np.int64)


def _paint(image: np.ndarray, colour: str, full: np.ndarray, visible: np.ndarray, cx: float, cy: float,
           r: float, rng: np.random.Generator) -> None:
    """Paint a thing's visible pixels in place: flat colour, soft top-left light, darker outline."""
    x1, y1, x2, y2 = mask_box(full)  # work on the shape's box only: most of the canvas is untouched
    x1, y1, x2, y2 = max(x1 - 1, 0), max(y1 - 1, 0), x2 + 1, y2 + 1
    f = full[y1:y2, x1:x2]
    yy, xx = np.mgrid[y1:y1 + f.shape[0], x1:x1 + f.shape[1]].astype(np.float32)
    light = 1.0 + 0.035 * ((cx - xx) + (cy - yy)) / max(r, 1.0)
    light *= float(rng.uniform(0.94, 1.04))
    interior = f.copy()
    interior[1:, :] &= f[:-1, :]
    interior[:-1, :] &= f[1:, :]
    interior[:, 1:] &= f[:, :-1]
    interior[:, :-1] &= f[:, 1:]
    light = np.where(interior, light, 0.6)  # one-pixel outline keeps touching shapes of a colour apart
    rgb = np.float32(COLOURS[colour])[None, None, :] * light[..., None]
    v = visible[y1:y2, x1:x2]
    image[y1:y2, x1:x2][v] = np.clip(rgb[v], 0, 255).astype(np.uint8)


def draw_scene(seed: int, index: int, size: int, dominant_shape: str) -> Scene:
    """Draw scene ``index`` of the world with ``seed`` at ``size`` x ``size`` pixels."""
    rng = np.random.default_rng([int(seed), int(index)])
    kept = _sample_things(rng, size, dominant_shape)
    layout, region = _sample_layout(rng, size)
    textures = [stuff_texture(name, size, rng) for name in layout]
    image = textures[0] if len(textures) == 1 else np.where((region == 0)[..., None], *textures)
    image = np.ascontiguousarray(image, dtype=np.uint8)
    covered = np.zeros((size, size), dtype=bool)
    things = []
    for shape, colour, full, visible, cx, cy, r in kept:
        _paint(image, colour, full, visible, cx, cy, r, rng)
        things.append(Thing(shape, colour, visible, mask_box(visible)))
        covered |= visible
    min_area = min_visible_area(size)
    stuff = []
    for k, name in enumerate(layout):
        visible = (region == k) & ~covered
        if visible.sum() >= min_area:
            stuff.append(StuffRegion(name, visible))
    return Scene(image=image, things=tuple(things), stuff=tuple(stuff), layout=layout)
