"""`generate_world`: draw every scene and write the split-level files of every layout.

Images ``0 .. n_train-1`` form the train split and the rest the val split; within a split, image
``j`` is drawn so that its largest visible thing has shape ``THING_CLASSES[j % T]``, so every split
with at least ``T`` images holds every ImageFolder class, in near-equal numbers.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..._io import atomic_write_text, check_output_folder
from ...errors import ConfigError
from .vocab import ADE_CLASSES, COLOURS, STUFF_CLASSES, THING_CLASSES, stuff_category_id, thing_category_id
from .writers import ADE_SPLITS, render_image

__all__ = ["generate_world", "split_sizes", "WORLD_VERSION"]

SPLITS = ("train", "val")
# Bumped when the written files change, so `ensure_world` regenerates older worlds (2: manifest records
# carry all five captions, and stuff segments as regions after the things; regions list captions too).
WORLD_VERSION = 2
_LAYOUT_NAMES = {"world.json", "imagefolder", "coco", "ade", "manifest"}
_PARALLEL_FROM = 64  # below this many images a pool costs more to start than it saves
_MAX_WORKERS = 2
_ID_STRIDE = 10  # annotation id = image id * 10 + k + 1; a scene has at most 4 things and 5 captions


def split_sizes(num: int, val_fraction: float) -> dict[str, int]:
    """Images per split: ``round(num * val_fraction)`` for val (train keeps at least one)."""
    n_val = min(int(round(num * val_fraction)), num - 1)
    return {"train": num - n_val, "val": n_val}


def _prepare(out: Path) -> None:
    """Create ``out``; clear a previous world there, refuse a file, a path below one, or a folder holding
    anything else (before anything is written)."""
    check_output_folder(out, "--out")
    if out.exists():
        entries = {p.name for p in out.iterdir()}
        foreign = sorted(entries - _LAYOUT_NAMES)
        if foreign:
            raise ConfigError(
                f"--out {out} already holds files that are not a synthetic world ({', '.join(foreign[:5])})."
                " Choose an empty or new folder; umgkit only replaces a folder it wrote itself.")
        for name in sorted(entries):  # a previous (maybe larger) world: stale images must not linger
            path = out / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    for split in SPLITS:
        for sub in (f"imagefolder/{split}", f"coco/{split}", f"coco/annotations/panoptic_{split}",
                    f"ade/images/{ADE_SPLITS[split]}", f"ade/annotations/{ADE_SPLITS[split]}"):
            (out / sub).mkdir(parents=True, exist_ok=True)
    (out / "manifest").mkdir(parents=True, exist_ok=True)


def _write_json(path: Path, obj: Any, indent: int | None = None) -> None:
    separators = None if indent else (",", ":")
    atomic_write_text(path, json.dumps(obj, sort_keys=True, indent=indent, separators=separators) + "\n")


def _category_colour(category_id: int) -> list[int]:
    return [(53 * category_id) % 256, (97 * category_id + 40) % 256, (151 * category_id + 80) % 256]


def _categories() -> tuple[list[dict], list[dict]]:
    """(instance categories, panoptic categories) with non-overlapping thing / stuff ids."""
    things = [{"id": thing_category_id(n), "name": n, "supercategory": "shape"} for n in THING_CLASSES]
    panoptic = [dict(c, isthing=1, color=_category_colour(c["id"])) for c in things]
    panoptic += [{"id": stuff_category_id(n), "name": n, "supercategory": "stuff", "isthing": 0,
                  "color": _category_colour(stuff_category_id(n))} for n in STUFF_CLASSES]
    return things, panoptic


def _write_split(out: Path, split: str, records: list[dict], info: dict) -> None:
    """The split's COCO captions / instances / panoptic JSON and its manifest JSONL."""
    ann_dir = out / "coco" / "annotations"
    images = [{"id": r["id"], "file_name": f"{r['name']}.png", "width": r["width"], "height": r["height"]}
              for r in records]
    thing_cats, panoptic_cats = _categories()
    captions, instances, panoptic, manifest = [], [], [], []
    for r in records:
        base = r["id"] * _ID_STRIDE + 1
        captions += [{"id": base + k, "image_id": r["id"], "caption": c} for k, c in enumerate(r["captions"])]
        things = [s for s in r["segments"] if s["isthing"]]
        instances += [{"id": base + k, "image_id": r["id"], "category_id": s["category_id"],
                       "segmentation": s["rle"], "area": s["area"], "bbox": s["bbox"], "iscrowd": 0,
                       "colour": s["colour"]} for k, s in enumerate(things)]
        segments_info = [{"id": s["id"], "category_id": s["category_id"], "area": s["area"],
                          "bbox": s["bbox"], "iscrowd": 0} for s in r["segments"]]
        panoptic.append({"image_id": r["id"], "file_name": f"{r['name']}.png",
                         "segments_info": segments_info})
        regions = [{"box": s["box"], "caption": s["caption"], "captions": s["captions"], "mask": s["rle"],
                    "tags": [s["colour"], s["shape"]] if s["isthing"] else [s["stuff"]]}
                   for s in r["segments"]]  # things, then stuff
        manifest.append({"image": f"../coco/{split}/{r['name']}.png", "caption": r["captions"][0],
                         "captions": r["captions"], "tags": r["tags"], "regions": regions})
    common = {"info": info, "licenses": [], "images": images}
    _write_json(ann_dir / f"captions_{split}.json", dict(common, annotations=captions))
    _write_json(ann_dir / f"instances_{split}.json",
                dict(common, annotations=instances, categories=thing_cats))
    _write_json(ann_dir / f"panoptic_{split}.json",
                dict(common, annotations=panoptic, categories=panoptic_cats))
    atomic_write_text(out / "manifest" / f"{split}.jsonl",
                "".join(json.dumps(m, sort_keys=True, separators=(",", ":")) + "\n" for m in manifest))


def _render_all(tasks: list[tuple], progress: bool) -> list[dict]:
    bar = tqdm(total=len(tasks), desc="synthetic world", unit="img", disable=not progress)
    workers = min(_MAX_WORKERS, os.cpu_count() or 1) if len(tasks) >= _PARALLEL_FROM else 1
    records = []
    try:
        if workers == 1:
            for task in tasks:
                records.append(render_image(task))
                bar.update()
        else:
            # Each scene is seeded by (seed, index), so the split over processes cannot change a byte.
            with multiprocessing.get_context().Pool(workers) as pool:
                for record in pool.imap(render_image, tasks, chunksize=16):
                    records.append(record)
                    bar.update()
    finally:
        bar.close()
    return records


def generate_world(out: str | Path, num: int, size: int = 128, seed: int = 0, val_fraction: float = 0.2,
                   progress: bool = True) -> dict:
    """Write a synthetic world of ``num`` images of ``size`` x ``size`` pixels under ``out``.

    The layout is described in `umgkit.data.synth`. Output bytes depend only on ``(num, size, seed,
    val_fraction)`` (and the Pillow / zlib versions that encode the PNGs). ``out`` must be new, empty,
    or a previous synthetic world, which is replaced.

    Returns a summary: ``counts`` (images per split), ``class_counts`` (ImageFolder images per class
    and split), ``thing_classes``, ``colours``, ``stuff_classes``, ``ade_classes`` and ``paths`` (the
    main files and folders, as strings under ``out``).

    Example::

        >>> summary = generate_world("synth_world", num=20, size=64, progress=False)  # doctest: +SKIP
        >>> summary["counts"]  # doctest: +SKIP
        {'train': 16, 'val': 4}
    """
    if int(num) != num or num < 1:
        raise ConfigError(f"num={num} (--num): give a positive whole number of images.")
    if int(size) != size or size < 32:
        raise ConfigError(f"size={size} (--size): images must be at least 32 pixels wide for the shapes "
                          "to be legible.")
    if int(seed) != seed or seed < 0:
        raise ConfigError(f"seed={seed} (--seed): give a non-negative integer seed.")
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction={val_fraction} (--val-fraction): give a share in [0, 1), e.g. 0.2.")
    num, size, seed = int(num), int(size), int(seed)
    out = Path(out).expanduser()
    _prepare(out)
    counts = split_sizes(num, val_fraction)
    id_width = max(6, len(str(num - 1)))
    tasks, start = [], 0
    for split in SPLITS:
        for j in range(counts[split]):
            dominant = THING_CLASSES[j % len(THING_CLASSES)]
            tasks.append((str(out), seed, start + j, size, split, dominant, id_width))
        start += counts[split]
    records = _render_all(tasks, progress)

    info = {"description": "umgkit synthetic world", "version": str(WORLD_VERSION), "seed": seed,
            "size": size}
    for split in SPLITS:
        _write_split(out, split, [r for r in records if r["split"] == split], info)
    atomic_write_text(out / "ade" / "classes.txt", "".join(f"{name}\n" for name in ADE_CLASSES))
    class_counts = {split: dict(sorted(Counter(r["class"] for r in records if r["split"] == split).items()))
                    for split in SPLITS}
    world = {"format": "umgkit-synth", "version": WORLD_VERSION, "seed": seed, "size": size, "num": num,
             "val_fraction": val_fraction, "counts": counts, "class_counts": class_counts,
             "id_width": id_width, "thing_classes": list(THING_CLASSES),
             "colours": {k: list(v) for k, v in COLOURS.items()}, "stuff_classes": list(STUFF_CLASSES),
             "ade_classes": list(ADE_CLASSES)}
    _write_json(out / "world.json", world, indent=2)  # written last: its presence marks a finished world
    paths = {"world": out / "world.json", "imagefolder": out / "imagefolder", "coco_images": out / "coco",
             "coco_annotations": out / "coco" / "annotations", "ade": out / "ade",
             "manifest": out / "manifest"}
    return {"counts": counts, "class_counts": class_counts, "thing_classes": list(THING_CLASSES),
            "colours": list(COLOURS), "stuff_classes": list(STUFF_CLASSES), "ade_classes": list(ADE_CLASSES),
            "paths": {k: str(v) for k, v in paths.items()}}
