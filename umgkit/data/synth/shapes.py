"""Rasterised thing shapes: one boolean mask per shape, drawn with Pillow on the full canvas.

A shape is given by its centre ``(cx, cy)`` and radius ``r`` in pixels (image coordinates, x right,
y down); every shape fits in the square ``[cx - r, cx + r] x [cy - r, cy + r]`` and parts outside the
canvas are clipped. Pillow's rasteriser is deterministic, so equal arguments give equal masks.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from .vocab import THING_CLASSES

__all__ = ["shape_mask"]


def _regular_polygon(cx: float, cy: float, r: float, n: int, start_deg: float) -> list[tuple[float, float]]:
    step = 2.0 * math.pi / n
    start = math.radians(start_deg)
    return [(cx + r * math.cos(start + k * step), cy + r * math.sin(start + k * step)) for k in range(n)]


def _star(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    # Five points up; inner radius 0.45 r keeps the arms thick enough to survive small sizes.
    points = []
    for k in range(10):
        radius = r if k % 2 == 0 else 0.45 * r
        angle = math.radians(-90.0 + 36.0 * k)
        points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
    return points


def _cross(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    a = 0.36 * r  # half the arm width
    return [(cx - a, cy - r), (cx + a, cy - r), (cx + a, cy - a), (cx + r, cy - a), (cx + r, cy + a),
            (cx + a, cy + a), (cx + a, cy + r), (cx - a, cy + r), (cx - a, cy + a), (cx - r, cy + a),
            (cx - r, cy - a), (cx - a, cy - a)]


def shape_mask(shape: str, cx: float, cy: float, r: float, size: int) -> np.ndarray:
    """Boolean ``(size, size)`` mask of ``shape`` centred at ``(cx, cy)`` with radius ``r`` pixels."""
    if shape not in THING_CLASSES:
        raise ValueError(f"Unknown shape '{shape}'; expected one of {', '.join(THING_CLASSES)}.")
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        draw.ellipse(box, fill=1)
    elif shape == "square":
        s = 0.82 * r  # a square of the same "radius" as a circle looks too big; shrink to similar area
        draw.rectangle((cx - s, cy - s, cx + s, cy + s), fill=1)
    elif shape == "triangle":
        draw.polygon(_regular_polygon(cx, cy + 0.15 * r, 1.1 * r, 3, -90.0), fill=1)
    elif shape == "star":
        draw.polygon(_star(cx, cy, r), fill=1)
    elif shape == "cross":
        draw.polygon(_cross(cx, cy, r), fill=1)
    elif shape == "ring":
        draw.ellipse(box, fill=1)
        h = 0.5 * r
        draw.ellipse((cx - h, cy - h, cx + h, cy + h), fill=0)
    elif shape == "diamond":
        draw.polygon([(cx, cy - r), (cx + 0.8 * r, cy), (cx, cy + r), (cx - 0.8 * r, cy)], fill=1)
    elif shape == "hexagon":
        draw.polygon(_regular_polygon(cx, cy, r, 6, 0.0), fill=1)
    return np.asarray(canvas, dtype=bool)
