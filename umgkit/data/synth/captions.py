"""Truthful captions for a scene: counts, colours and relative positions of the visible things.

Everything is computed from `Scene.things` (visible objects only): a group is all things sharing a
(colour, shape); relative positions compare box centres (x grows right, y grows down, so "above"
means a smaller centre y). A group relation ("two red circles left of a blue star") is only stated
when it holds for every member of both groups.
"""

from __future__ import annotations

from .scene import Scene, Thing

__all__ = ["scene_captions", "region_caption", "region_captions", "stuff_caption", "scene_tags",
           "NUMBER_WORDS"]

NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}
_STUFF_PHRASE = {"sky": "sky", "grass": "grass", "water": "water", "sand": "sand", "brick": "a brick wall"}


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _plural(noun: str) -> str:
    return noun + ("es" if noun.endswith(("s", "x", "sh", "ch")) else "s")


def _counted(count: int, noun: str, adjective: str = "") -> str:
    """``"a red circle"``, ``"two red circles"`` (``adjective`` may be empty)."""
    words = f"{adjective} {noun}".strip() if count == 1 else f"{adjective} {_plural(noun)}".strip()
    head = _article(words) if count == 1 else NUMBER_WORDS.get(count, str(count))  # never "one red circle"
    return f"{head} {words}"


def _join(parts: list[str]) -> str:
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _groups(things: tuple[Thing, ...]) -> list[tuple[str, str, list[Thing]]]:
    """``(colour, shape, members)`` in order of first appearance (painting order)."""
    groups: dict[tuple[str, str], list[Thing]] = {}
    for t in things:
        groups.setdefault((t.colour, t.shape), []).append(t)
    return [(c, s, members) for (c, s), members in groups.items()]


def _background(scene: Scene) -> str:
    """``"on grass"`` or ``"on sky above water"`` from the stuff regions that are visible."""
    names = [r.stuff for r in scene.stuff]
    if not names:
        return ""
    if len(names) == 1:
        return f"on {_STUFF_PHRASE[names[0]]}"
    return f"on {_STUFF_PHRASE[names[0]]} above {_STUFF_PHRASE[names[1]]}"


def _relation(a: list[Thing], b: list[Thing]) -> tuple[str, float] | None:
    """Relation word of group ``a`` to group ``b`` that holds for all pairs, and its margin in pixels."""
    ax = [t.centre[0] for t in a]
    ay = [t.centre[1] for t in a]
    bx = [t.centre[0] for t in b]
    by = [t.centre[1] for t in b]
    options = [("left of", min(bx) - max(ax)), ("right of", min(ax) - max(bx)),
               ("above", min(by) - max(ay)), ("below", min(ay) - max(by))]
    word, margin = max(options, key=lambda o: o[1])
    return (word, margin) if margin > 0 else None


def _where(t: Thing, size: int) -> str:
    """Coarse position of a thing in the frame from its box centre, e.g. ``"in the top left"``."""
    x, y = t.centre
    col = "left" if x < size / 3 else ("right" if x > 2 * size / 3 else "")
    row = "top" if y < size / 3 else ("bottom" if y > 2 * size / 3 else "")
    if row and col:
        return f"in the {row} {col}"
    if row:
        return f"at the {row}"
    return f"on the {col}" if col else "in the centre"


def _position_sentence(scene: Scene) -> str:
    groups = _groups(scene.things)
    best = None
    for i, (ca, sa, ma) in enumerate(groups):
        for cb, sb, mb in groups[i + 1:]:
            rel = _relation(ma, mb)
            if rel and (best is None or rel[1] > best[0]):
                best = (rel[1], f"{_counted(len(ma), sa, ca)} {rel[0]} {_counted(len(mb), sb, cb)}")
    if best is not None:
        return best[1]
    if len(scene.things) >= 2:  # one group only, or groups that interleave: compare two single things
        first, second = scene.things[0], scene.things[1]
        rel = _relation([first], [second])
        if rel:
            same = (first.colour, first.shape) == (second.colour, second.shape)
            other = f"another {second.colour} {second.shape}" if same else region_caption(second)
            return f"{_counted(1, first.shape, first.colour)} {rel[0]} {other}"
    t = scene.dominant
    return f"{_counted(1, t.shape, t.colour)} {_where(t, scene.image.shape[0])}"


def scene_captions(scene: Scene) -> list[str]:
    """Five captions: full listing, shape counts, a relative position, the largest thing, the colours."""
    groups = _groups(scene.things)
    bg = _background(scene)
    on_bg = f" {bg}" if bg else ""
    listing = _join([_counted(len(m), s, c) for c, s, m in groups])
    shape_counts: dict[str, int] = {}
    for t in scene.things:
        shape_counts[t.shape] = shape_counts.get(t.shape, 0) + 1
    n = len(scene.things)
    total = _counted(n, "shape")
    by_shape = _join([_counted(k, s) for s, k in shape_counts.items()])
    colours = list(dict.fromkeys(t.colour for t in scene.things))
    big = scene.dominant
    others = n - 1
    largest = f"the largest shape is {_counted(1, big.shape, big.colour)}"
    if others:
        largest += f", with {NUMBER_WORDS.get(others, str(others))} other shape{'s' if others > 1 else ''}"
    colour_phrase = _join(colours) + (" shape" if n == 1 else " shapes")
    return [
        f"{listing}{on_bg}",
        f"a picture of {total}: {by_shape}" if n > 1 else f"a picture of a single {big.shape}{on_bg}",
        _position_sentence(scene),
        largest,
        f"{colour_phrase}{on_bg}",
    ]


def region_caption(thing: Thing) -> str:
    """``"a red circle"``."""
    return _counted(1, thing.shape, thing.colour)


def region_captions(thing: Thing) -> list[str]:
    """``["a red circle", "a circle"]``: the full description and the shape alone, as region
    descriptions of varying detail (Visual Genome style)."""
    return [region_caption(thing), _counted(1, thing.shape)]


def stuff_caption(stuff: str) -> str:
    """``"grass"``, ``"a brick wall"``: the background phrase the scene captions use."""
    return _STUFF_PHRASE[stuff]


def scene_tags(scene: Scene) -> list[str]:
    """Sorted unique colour, shape and visible stuff names."""
    names = {t.colour for t in scene.things} | {t.shape for t in scene.things}
    return sorted(names | {r.stuff for r in scene.stuff})
