"""The fixed vocabulary of the synthetic world: thing shapes, thing colours and stuff textures.

Category ids are promised stable for a given umgkit version because every format derives them from
these tuples: COCO instance / panoptic thing ids are ``1..T`` in `THING_CLASSES` order, panoptic stuff
ids are ``T+1..T+S`` in `STUFF_CLASSES` order, and ADE label values equal the panoptic category id
(0 = void / "other"), so `ADE_CLASSES` lists things first, then stuff.
"""

from __future__ import annotations

__all__ = ["THING_CLASSES", "COLOURS", "COLOUR_NAMES", "STUFF_CLASSES", "ADE_CLASSES",
           "thing_category_id", "stuff_category_id"]

# Axis-aligned on purpose: a square turned by 45 degrees would be a diamond, and labels must be unambiguous.
THING_CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "ring", "diamond",
                                  "hexagon")

# Nominal RGB of each colour name. Objects are drawn within ~25 of these values (brightness jitter and
# shading) and the palette is spread so the nearest nominal colour to an object's median pixel is its name.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "orange": (245, 140, 30),
    "yellow": (240, 220, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "purple": (140, 60, 190),
    "pink": (245, 130, 190),
    "white": (245, 245, 245),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)

STUFF_CLASSES: tuple[str, ...] = ("sky", "grass", "water", "sand", "brick")

ADE_CLASSES: tuple[str, ...] = THING_CLASSES + STUFF_CLASSES


def thing_category_id(shape: str) -> int:
    """COCO / panoptic / ADE id of a thing class (1-based)."""
    return THING_CLASSES.index(shape) + 1


def stuff_category_id(stuff: str) -> int:
    """Panoptic / ADE id of a stuff class (after all thing ids)."""
    return len(THING_CLASSES) + STUFF_CLASSES.index(stuff) + 1
