"""Per-image output: render one scene, write its PNG files, and return its annotation record.

`render_image` is what a worker process runs. It writes the RGB image once, to
``coco/<split>/<name>.png``, and hard-links that file into the ImageFolder and ADE layouts; the
panoptic PNG and the ADE label PNG are written beside them. It returns a JSON-ready record from
which `umgkit.data.synth.world` assembles the split-level JSON files, so workers never share state.
Every file is written to a temporary name and renamed, so an interrupted run never leaves a
half-written PNG under a final name.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from ..._io import atomic_write
from .captions import region_captions, scene_captions, scene_tags, stuff_caption
from .scene import Thing, draw_scene, mask_box
from .vocab import stuff_category_id, thing_category_id

__all__ = ["ADE_SPLITS", "image_name", "render_image", "rle_encode", "xyxy_to_xywh"]

ADE_SPLITS = {"train": "training", "val": "validation"}


def image_name(image_id: int, width: int) -> str:
    """Zero-padded file stem of an image id (same stem in every layout)."""
    return str(image_id).zfill(width)


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """COCO compressed RLE of a boolean ``(H, W)`` mask with ``counts`` as str (JSON-ready)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def xyxy_to_xywh(box: tuple[int, int, int, int]) -> list[int]:
    """Absolute XYXY pixel edges to COCO's ``[x, y, w, h]`` (what ``pycocotools.mask.toBbox`` gives)."""
    x1, y1, x2, y2 = box
    return [x1, y1, x2 - x1, y2 - y1]


def _atomic_png(array: np.ndarray, path: Path) -> None:
    # zlib level 1: the textures' pixel noise barely compresses, and level 1 encodes ~2x faster than the
    # default 6 for files of the same size. Encoding is deterministic for a given zlib build.
    atomic_write(path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG", compress_level=1))


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst``; copy the bytes when the file system refuses links (cross-device,
    FAT, some network mounts) - the layouts stay identical, only disk use grows."""
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def render_image(task: tuple[str, int, int, int, str, str, int]) -> dict[str, Any]:
    """Draw and write image ``index``; ``task = (out, seed, index, size, split, dominant_shape, id_width)``.

    The record holds ``id``, ``name``, ``split``, ``width``, ``height``, ``class`` (shape of the
    largest visible thing), ``captions``, ``tags`` and ``segments``: things first in painting order,
    then visible stuff, each with panoptic ``id`` (``category_id + 256 * occurrence``, unique in the
    image and never 0 = VOID), ``category_id``, ``isthing``, ``area``, ``bbox`` (COCO xywh), ``box``
    (XYXY), ``rle``, ``caption`` and ``captions`` (it first); things also have ``shape`` and ``colour``,
    stuff has ``stuff``.
    """
    out_str, seed, index, size, split, dominant_shape, id_width = task
    out = Path(out_str)
    scene = draw_scene(seed, index, size, dominant_shape)
    name = image_name(index, id_width)
    ade_split = ADE_SPLITS[split]

    image_path = out / "coco" / split / f"{name}.png"
    _atomic_png(scene.image, image_path)
    cls = scene.dominant.shape
    class_dir = out / "imagefolder" / split / cls
    class_dir.mkdir(parents=True, exist_ok=True)
    _link_or_copy(image_path, class_dir / f"{name}.png")
    _link_or_copy(image_path, out / "ade" / "images" / ade_split / f"{name}.png")

    panoptic = np.zeros((size, size), dtype=np.int64)  # segment id per pixel, 0 = VOID
    label = np.zeros((size, size), dtype=np.uint8)  # ADE class per pixel, 0 = other / void
    occurrences: dict[int, int] = {}
    segments = []
    regions = [(t.mask, thing_category_id(t.shape), t) for t in scene.things]
    regions += [(r.mask, stuff_category_id(r.stuff), r) for r in scene.stuff]
    for mask, category_id, part in regions:
        occurrences[category_id] = occurrences.get(category_id, 0) + 1
        segment_id = category_id + 256 * occurrences[category_id]
        panoptic[mask] = segment_id
        label[mask] = category_id
        box = mask_box(mask)
        thing = isinstance(part, Thing)
        seg = {"id": segment_id, "category_id": category_id, "isthing": thing, "area": int(mask.sum()),
               "bbox": xyxy_to_xywh(box), "box": list(box), "rle": rle_encode(mask)}
        if thing:
            captions = region_captions(part)
            seg.update(shape=part.shape, colour=part.colour, caption=captions[0], captions=captions)
        else:
            phrase = stuff_caption(part.stuff)
            seg.update(stuff=part.stuff, caption=phrase, captions=[phrase])
        segments.append(seg)
    rgb = np.stack([panoptic % 256, (panoptic // 256) % 256, panoptic // 65536], axis=-1).astype(np.uint8)
    _atomic_png(rgb, out / "coco" / "annotations" / f"panoptic_{split}" / f"{name}.png")
    _atomic_png(label, out / "ade" / "annotations" / ade_split / f"{name}.png")
    return {"id": int(index), "name": name, "split": split, "width": size, "height": size, "class": cls,
            "captions": scene_captions(scene), "tags": scene_tags(scene), "segments": segments}
