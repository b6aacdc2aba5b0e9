"""Drawing helpers on uint8 RGB arrays (H, W, 3); boxes are absolute XYXY pixels."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

__all__ = ["add_legend", "colour_for", "draw_boxes", "overlay_labels", "panoptic_colours", "save_grid",
           "to_rgb"]

IGNORE = 255


def colour_for(index: int) -> tuple[int, int, int]:
    """A stable, well-separated colour per integer (golden-ratio hue steps)."""
    hue = (index * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.65 + 0.35 * ((index // 7) % 2), 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def overlay_labels(image: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a label map (H, W) over ``image``; label 255 (ignore) stays uncoloured."""
    out = image.astype(np.float32).copy()
    for value in np.unique(labels):
        if value == IGNORE:
            continue
        sel = labels == value
        out[sel] = (1 - alpha) * out[sel] + alpha * np.array(colour_for(int(value)), np.float32)
    return out.clip(0, 255).astype(np.uint8)


def panoptic_colours(segment_ids: np.ndarray, categories: dict[int, int] | None = None) -> np.ndarray:
    """An RGB picture of a panoptic id map: one colour per segment, VOID (0) black.

    With ``categories`` (segment id -> category id), segments of one category share a hue family so
    stuff and thing classes stay recognisable while instances differ.
    """
    out = np.zeros((*segment_ids.shape, 3), np.uint8)
    for n, sid in enumerate(np.unique(segment_ids)):
        if sid == 0:
            continue
        key = categories.get(int(sid), int(sid)) * 3 + n % 3 if categories else int(sid)
        out[segment_ids == sid] = colour_for(key)
    return out


def draw_boxes(image: np.ndarray, boxes: Sequence[Sequence[float]], labels: Sequence[str] = (),
               scores: Sequence[float] | None = None, colours: Sequence[int] | None = None) -> np.ndarray:
    """Rectangles with optional ``label score`` captions; returns a new array."""
    pil = Image.fromarray(image.astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    for i, box in enumerate(boxes):
        colour = colour_for(colours[i] if colours is not None else i)
        x1, y1, x2, y2 = (float(v) for v in box)
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=max(1, round(min(pil.size) / 128)))
        text = labels[i] if i < len(labels) else ""
        if scores is not None:
            text = f"{text} {scores[i]:.2f}".strip()
        if text:
            left, top, right, bottom = draw.textbbox((x1, y1), text)
            draw.rectangle([left, top, right, bottom], fill=colour)
            draw.text((x1, y1), text, fill=(0, 0, 0))
    return np.asarray(pil)


def add_legend(image: np.ndarray, entries: Sequence[tuple[str, int]], scale: int = 1) -> np.ndarray:
    """``image`` (upscaled ``scale`` times, nearest) with a legend column on its right: one colour swatch
    (``colour_for(index)``) and name per ``(name, index)`` entry; returns a new array."""
    pil = Image.fromarray(image.astype(np.uint8))
    if scale > 1:
        pil = pil.resize((pil.width * scale, pil.height * scale), Image.NEAREST)
    probe = ImageDraw.Draw(pil)
    row = 14
    width = max([probe.textbbox((0, 0), name)[2] for name, _ in entries] + [0]) + 24
    canvas = Image.new("RGB", (pil.width + width, max(pil.height, row * len(entries) + 4)), (255, 255, 255))
    canvas.paste(pil, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for i, (name, index) in enumerate(entries):
        y = 2 + i * row
        draw.rectangle([pil.width + 4, y + 1, pil.width + 14, y + 11], fill=colour_for(int(index)))
        draw.text((pil.width + 18, y), name, fill=(0, 0, 0))
    return np.asarray(canvas)


def save_grid(images: Sequence[np.ndarray], path: str | Path, columns: int = 4, titles: Sequence[str] = (),
              scale: int = 1) -> Path:
    """Tile equally sized RGB arrays into one PNG (optionally upscaled, with a title strip each)."""
    if not images:
        raise ValueError(f"save_grid: no images to write to {path}.")
    h, w = images[0].shape[:2]
    if any(im.shape[:2] != (h, w) for im in images):
        raise ValueError("save_grid: all images must share one size; resize them first.")
    title_h = 12 if titles else 0
    rows = -(-len(images) // columns)
    cols = min(columns, len(images))
    canvas = Image.new("RGB", (cols * w * scale, rows * (h * scale + title_h)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i, im in enumerate(images):
        tile = Image.fromarray(im.astype(np.uint8)).resize((w * scale, h * scale), Image.NEAREST)
        x, y = (i % columns) * w * scale, (i // columns) * (h * scale + title_h)
        canvas.paste(tile, (x, y + title_h))
        if i < len(titles):
            draw.text((x + 2, y), titles[i], fill=(0, 0, 0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path


def to_rgb(image: torch.Tensor, mean: Sequence[float], std: Sequence[float],
           size: tuple[int, int]) -> np.ndarray:
    """A normalised model input ``(3, h, w)`` back to uint8 RGB ``(H, W, 3)`` at ``size``, for overlays
    drawn at the resolution of the labels."""
    m = torch.tensor(mean, device=image.device)[:, None, None]
    s = torch.tensor(std, device=image.device)[:, None, None]
    pic = (image.float() * s + m).clamp(0, 1)[None]
    pic = F.interpolate(pic, size=size, mode="bilinear", align_corners=False)[0]
    return (pic.permute(1, 2, 0) * 255).round().byte().cpu().numpy()
