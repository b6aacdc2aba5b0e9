"""The synthetic multi-granularity world: coloured thing shapes on stuff textures, in every format.

`generate_world(out, num, size=128, seed=0, val_fraction=0.2)` draws ``num`` scenes (1-4 things of
`THING_CLASSES` x `COLOUR_NAMES`, later ones occluding earlier ones, on one or two regions of
`STUFF_CLASSES`) and writes, under ``out``::

    world.json                                        vocabulary, seed, size, num, split counts
    imagefolder/{train,val}/<class>/<id>.png          class = shape of the largest visible thing
    coco/{train,val}/<id>.png                         the images every COCO JSON refers to
    coco/annotations/captions_{train,val}.json        COCO captions, 5 per image
    coco/annotations/instances_{train,val}.json       COCO instances, thing ids 1..T, compressed RLE
    coco/annotations/panoptic_{train,val}.json        COCO panoptic JSON (things 1..T, stuff T+1..T+S)
    coco/annotations/panoptic_{train,val}/<id>.png    RGB, segment id = R + 256 G + 256^2 B, VOID = 0
    ade/images/{training,validation}/<id>.png         ADE20K-style images
    ade/annotations/{training,validation}/<id>.png    mode L labels, 0 = other/void, k = ADE_CLASSES[k-1]
    ade/classes.txt                                   one class name per line for labels 1..K
    manifest/{train,val}.jsonl                        pretraining manifest (below)

Conventions: ``<id>`` is the zero-padded image id (at least 6 digits), unique across splits; train
holds the first ids. The same PNG is hard-linked into imagefolder/, coco/ and ade/images/ (copied
where the file system refuses links). Boxes are absolute XYXY pixel edges (``x2 = last column + 1``)
except COCO's ``bbox``, which is ``[x, y, w, h]`` of the same box. Masks hold visible pixels only and
never overlap; every thing pixel belongs to exactly one instance and one panoptic segment, and the ADE
label equals the panoptic category id. A manifest line is ``{"image": "../coco/<split>/<id>.png",
"caption": str, "captions": [5 x str], "tags": [str], "regions": [{"box": [x1, y1, x2, y2],
"caption": "a red circle", "captions": ["a red circle", "a circle"], "tags": ["red", "circle"],
"mask": RLE}, ...]}`` with one region per instance, in instance order, then one per visible stuff
segment (``"caption": "grass"``, ``"tags": ["grass"]``). Captions are computed from the visible things
(counts, colours, relative positions of box centres). The same arguments give byte-identical files.
"""

from .captions import region_caption, scene_captions
from .ensure import ensure_world
from .scene import Scene, StuffRegion, Thing, draw_scene, min_visible_area
from .vocab import (
    ADE_CLASSES,
    COLOUR_NAMES,
    COLOURS,
    STUFF_CLASSES,
    THING_CLASSES,
    stuff_category_id,
    thing_category_id,
)
from .world import generate_world, split_sizes

__all__ = [
    "ensure_world",
    "generate_world",
    "split_sizes",
    "THING_CLASSES",
    "COLOURS",
    "COLOUR_NAMES",
    "STUFF_CLASSES",
    "ADE_CLASSES",
    "thing_category_id",
    "stuff_category_id",
    "Scene",
    "Thing",
    "StuffRegion",
    "draw_scene",
    "min_visible_area",
    "scene_captions",
    "region_caption",
]
