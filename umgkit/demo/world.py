"""`umgkit demo`: the synthetic world end to end, written to one folder with a markdown report.

The demo uses only public pieces (the world generator, the registered readers, the drawing helpers), so
it doubles as a check that everything the generator writes reads back through the standard readers.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from . import data as _readers_registered  # noqa: F401  (fills DATASETS)
from .registry import DATASETS
from .vis import draw_boxes, overlay_labels, panoptic_colours, save_grid

__all__ = ["run_demo", "preview_world"]


def run_demo(out: str | Path, num: int = 400, seed: int = 0, size: int = 128) -> Path:
    """Generate the world under ``out/world``, draw a preview and write ``out/report.md``."""
    from .data.synth import generate_world

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    summary = generate_world(out / "world", num=num, size=size, seed=seed)
    seconds = time.perf_counter() - start
    print(f"[demo] synthetic world: {summary['counts']} images in {seconds:.1f} s -> {out / 'world'}")
    preview = preview_world(out / "world", out / "world_preview.png")
    print(f"[demo] preview of every annotation format -> {preview}")
    rows = [f"| {name} | {len(DATASETS.build(name, **args))} |" for name, args in _readers(out / "world")]
    report = out / "report.md"
    report.write_text("\n".join([
        "# umgkit demo",
        "",
        f"Synthetic world: {num} images of {size} px (seed {seed}), generated in {seconds:.1f} s.",
        "",
        "| reader (val split) | images read |",
        "| --- | --- |",
        *rows,
        "",
        "Image, semantic labels (ADE20K layout), panoptic segments (COCO panoptic) and instance boxes",
        "(COCO instances), each read back through umgkit's registered readers:",
        "",
        f"![world preview]({preview.name})",
        "",
    ]))
    print(f"[demo] report -> {report}")
    return report


def preview_world(world: Path, path: Path, count: int = 4) -> Path:
    """One row per validation image: picture, ADE labels, panoptic map, instance boxes."""
    ade = DATASETS.build("ade20k", root=str(world / "ade"), split="val", limit=count)
    pan = DATASETS.build("coco_panoptic", **_coco(world, "panoptic"), limit=count)
    ins = DATASETS.build("coco_instances", **_coco(world, "instances"), limit=count)
    tiles, titles = [], []
    for i in range(min(count, len(ade))):
        image = (ade[i]["image"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        segments = pan[i]
        ids = np.zeros(image.shape[:2], np.int64)
        for k, mask in enumerate(segments["masks"]):
            ids[mask.numpy()] = k + 1
        boxes = ins[i]
        names = [ins.class_names[int(c)] for c in boxes["labels"]]
        tiles += [image, overlay_labels(image, ade[i]["label_map"].numpy()), panoptic_colours(ids),
                  draw_boxes(image, boxes["boxes"].tolist(), names)]
        titles += ["image", "semantic", "panoptic", "instances"]
    return save_grid(tiles, path, columns=4, titles=titles, scale=2)


def _coco(world: Path, kind: str) -> dict:
    coco = world / "coco"
    return {"root": str(coco), "split": "val", "image_dir": str(coco / "val"),
            "annotations_file": str(coco / "annotations" / f"{kind}_val.json"),
            **({"panoptic_dir": str(coco / "annotations" / "panoptic_val")} if kind == "panoptic" else {})}


def _readers(world: Path) -> list[tuple[str, dict]]:
    return [
        ("imagefolder", {"root": str(world / "imagefolder"), "split": "val"}),
        ("coco_captions", {**_coco(world, "captions")}),
        ("coco_instances", _coco(world, "instances")),
        ("coco_panoptic", _coco(world, "panoptic")),
        ("ade20k", {"root": str(world / "ade"), "split": "val"}),
        ("manifest", {"root": str(world / "manifest"), "split": "val"}),
    ]
