"""Typed predictions of the `Predictor`: one per image, each can ``save(dir)``, ``draw()`` and ``to_json()``.

`write_predictions` writes a whole call's predictions in the formats other tools read: classification
``predictions.jsonl``; retrieval ``image_to_text.jsonl`` / ``text_to_image.jsonl``; semantic label PNGs
(``labels/<stem>.png``, pixel value = class index); panoptic COCO panoptic PNGs + ``panoptic.json``; detection
a COCO results list ``detections.json`` (boxes XYWH, RLE masks) + ``images.json`` (ids, sizes, categories).
Every image also gets ``overlays/<stem>.png`` with a legend (not for retrieval). Each prediction type
names its summary writer (`Prediction.writer`); a type without one gets ``predictions.jsonl``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from .._io import atomic_write, atomic_write_text

__all__ = ["Prediction", "PredictionWriter", "ClassificationPrediction", "RetrievalPrediction",
           "SemanticPrediction", "PanopticPrediction", "DetectionPrediction", "SemanticWriter",
           "PanopticWriter", "DetectionWriter", "RetrievalWriter", "write_predictions"]


class PredictionWriter:
    """Collects the predictions of one call and writes its summary files into ``directory``.

    `add` keeps one small row per prediction (never its picture), `close` writes the files and returns
    them. This base writes ``predictions.jsonl`` (one `Prediction.to_json` per line), which serves any
    prediction type that sets no writer of its own.
    """

    def __init__(self, directory: Path, *, class_names: Sequence[str] = (),
                 category_ids: Sequence[int] | None = None, thing_classes: Sequence[bool] | None = None,
                 texts: Sequence[str] = ()) -> None:
        self.directory = Path(directory)
        self.class_names = list(class_names)
        self.category_ids = None if category_ids is None else list(category_ids)
        self.thing_classes = None if thing_classes is None else list(thing_classes)
        self.texts = list(texts)
        self.rows: list[dict] = []
        self.sources: list[str] = []
        self.images: list[dict] = []  # COCO "images" entries: id, file_name, height, width

    def add(self, pred: Prediction) -> None:
        self.sources.append(pred.source)
        self.images.append({"id": pred.image_id, "file_name": Path(pred.source).name,
                            "height": int(pred.image.shape[0]), "width": int(pred.image.shape[1])})
        self.rows += self.rows_of(pred)

    def rows_of(self, pred: Prediction) -> list[dict]:
        """The summary rows of one prediction."""
        return [pred.to_json()]

    def close(self) -> list[Path]:
        return [_jsonl(self.directory / "predictions.jsonl", self.rows)]


class SemanticWriter(PredictionWriter):
    """``predictions.json``: the class names and one row per image (label PNG path, class areas)."""

    def close(self) -> list[Path]:
        return [_json(self.directory / "predictions.json", {"class_names": self.class_names,
                                                            "images": self.rows})]


class PanopticWriter(PredictionWriter):
    """``panoptic.json`` in the COCO panoptic format (the PNGs are each prediction's own files)."""

    def close(self) -> list[Path]:
        from ..metrics.panoptic import write_panoptic_json

        things = self.thing_classes if self.thing_classes is not None else [True] * len(self.class_names)
        cats = [{"id": int(c), "name": n, "isthing": int(t)}
                for c, n, t in zip(self.category_ids, self.class_names, things, strict=True)]
        return [write_panoptic_json(self.directory / "panoptic.json", self.rows, cats, self.images)]


class DetectionWriter(PredictionWriter):
    """``detections.json`` (a COCO results list over all images) + ``images.json`` (ids, sizes,
    categories)."""

    def rows_of(self, pred: Prediction) -> list[dict]:
        return pred.coco_results()

    def close(self) -> list[Path]:
        cats = [{"id": int(c), "name": n} for c, n in zip(self.category_ids, self.class_names, strict=True)]
        return [_json(self.directory / "detections.json", self.rows),
                _json(self.directory / "images.json", {"images": self.images, "categories": cats})]


class RetrievalWriter(PredictionWriter):
    """``image_to_text.jsonl`` (texts ranked per image) and ``text_to_image.jsonl`` (images per text)."""

    def __init__(self, directory: Path, **kwargs: Any) -> None:
        super().__init__(directory, **kwargs)
        self.embeddings: list[np.ndarray] = []  # (D,) per image
        self.text_embeddings: np.ndarray | None = None  # (T, D)

    def add(self, pred: Prediction) -> None:
        super().add(pred)
        self.embeddings.append(pred.embedding)
        self.text_embeddings = pred.text_embeddings

    def close(self) -> list[Path]:
        written = [_jsonl(self.directory / "image_to_text.jsonl", self.rows)]
        if self.texts:
            sims = self.text_embeddings @ np.stack(self.embeddings).T  # (T, N)
            order = np.argsort(-sims, axis=1, kind="stable")
            per_text = [{"text": t, "images": [self.sources[j] for j in order[i]],
                         "scores": [round(float(sims[i, j]), 6) for j in order[i]]}
                        for i, t in enumerate(self.texts)]
            written.append(_jsonl(self.directory / "text_to_image.jsonl", per_text))
        return written


@dataclass
class Prediction:
    """What every prediction carries: the input's name, its COCO-style id, the RGB picture, the
    vocabulary."""

    source: str  # file path, or "image_<i>" for in-memory inputs
    image_id: int  # the file stem as an int when every stem is digits (COCO names), else 1..N in input order
    image: np.ndarray = field(repr=False)  # (H, W, 3) uint8, the input as read
    class_names: list[str] = field(default_factory=list)
    writer: ClassVar[type[PredictionWriter]] = PredictionWriter  # writes a call's summary files

    @property
    def stem(self) -> str:
        return Path(self.source).stem

    def draw(self) -> np.ndarray:
        return self.image

    def to_json(self) -> dict[str, Any]:
        return {"file": self.source, "image_id": self.image_id}

    def save(self, directory: str | Path) -> list[Path]:
        """This image's files under ``directory`` (the per-image part of `write_predictions`)."""
        return [_save_png(self.draw(), Path(directory) / "overlays" / f"{self.stem}.png")]


@dataclass
class ClassificationPrediction(Prediction):
    labels: list[str] = field(default_factory=list)  # top-k names, best first
    label_ids: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)  # softmax probabilities

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "labels": self.labels, "label_ids": self.label_ids,
                "scores": self.scores}

    def draw(self) -> np.ndarray:
        from ..vis import add_legend

        entries = [(f"{n} {s:.2f}", i)
                   for n, i, s in zip(self.labels, self.label_ids, self.scores, strict=True)]
        return add_legend(self.image, entries, scale=_scale(self.image))


@dataclass
class RetrievalPrediction(Prediction):
    writer: ClassVar[type[PredictionWriter]] = RetrievalWriter
    embedding: np.ndarray | None = field(default=None, repr=False)  # (D,) L2-normalised image embedding
    texts: list[str] = field(default_factory=list)  # the query texts, ranked best first for this image
    text_scores: list[float] = field(default_factory=list)  # cosine similarity of each ranked text
    text_embeddings: np.ndarray | None = field(default=None, repr=False)  # (T, D) of the call's texts

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "texts": self.texts, "scores": self.text_scores}

    def save(self, directory: str | Path) -> list[Path]:
        return []


@dataclass
class SemanticPrediction(Prediction):
    writer: ClassVar[type[PredictionWriter]] = SemanticWriter
    label_map: np.ndarray | None = field(default=None, repr=False)  # (H, W) class index per pixel

    def areas(self) -> dict[str, float]:
        """Share of the image's pixels per predicted class (classes present only)."""
        counts = np.bincount(self.label_map.reshape(-1), minlength=len(self.class_names))
        return {self.class_names[i]: float(c) / self.label_map.size for i, c in enumerate(counts) if c}

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "labels": f"labels/{self.stem}.png", "areas": self.areas()}

    def draw(self) -> np.ndarray:
        from ..vis import add_legend, overlay_labels

        present = [int(i) for i in np.unique(self.label_map)]
        return add_legend(overlay_labels(self.image, self.label_map),
                          [(self.class_names[i], i) for i in present], scale=_scale(self.image))

    def save(self, directory: str | Path) -> list[Path]:
        dtype = np.uint8 if len(self.class_names) <= 255 else np.uint16
        path = _save_png(self.label_map.astype(dtype), Path(directory) / "labels" / f"{self.stem}.png")
        return [path, *super().save(directory)]


@dataclass
class PanopticPrediction(Prediction):
    writer: ClassVar[type[PredictionWriter]] = PanopticWriter
    segment_ids: np.ndarray | None = field(default=None, repr=False)  # (H, W), 0 = VOID, segments from 1
    segments: list[dict] = field(default_factory=list)  # {"id", "category_id" (label), "isthing", "score"}
    category_ids: list[int] = field(default_factory=list)  # COCO category id per label

    def segments_info(self) -> list[dict]:
        """COCO panoptic ``segments_info`` (category ids, areas, bounding boxes)."""
        out = []
        for s in self.segments:
            ys, xs = np.nonzero(self.segment_ids == s["id"])
            if not len(xs):
                continue
            x0, y0 = int(xs.min()), int(ys.min())
            out.append({"id": int(s["id"]), "category_id": int(self.category_ids[s["category_id"]]),
                        "label": self.class_names[s["category_id"]], "isthing": int(bool(s["isthing"])),
                        "score": float(s["score"]), "area": int(len(xs)),
                        "bbox": [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1]})
        return out

    def to_json(self) -> dict[str, Any]:
        return {"image_id": self.image_id, "file_name": f"{self.stem}.png",
                "segments_info": self.segments_info()}

    def draw(self) -> np.ndarray:
        from ..vis import add_legend, panoptic_colours

        labels = {s["id"]: s["category_id"] + 1 for s in self.segments}
        colours = panoptic_colours(self.segment_ids, labels)
        blend = (0.5 * self.image + 0.5 * colours).astype(np.uint8)
        blend[self.segment_ids == 0] = self.image[self.segment_ids == 0]
        legend = {}  # class -> the colour key of its first segment, as panoptic_colours picks it
        for n, sid in enumerate(np.unique(self.segment_ids)):
            if int(sid) in labels:
                legend.setdefault(labels[int(sid)] - 1, labels[int(sid)] * 3 + n % 3)
        return add_legend(blend, [(self.class_names[c], key) for c, key in sorted(legend.items())],
                          scale=_scale(self.image))

    def save(self, directory: str | Path) -> list[Path]:
        from ..metrics.panoptic import write_panoptic_png

        path = write_panoptic_png(self.segment_ids, Path(directory) / "panoptic" / f"{self.stem}.png")
        return [path, *super().save(directory)]


@dataclass
class DetectionPrediction(Prediction):
    writer: ClassVar[type[PredictionWriter]] = DetectionWriter
    boxes: np.ndarray | None = field(default=None, repr=False)  # (N, 4) absolute XYXY pixels
    scores: np.ndarray | None = field(default=None, repr=False)  # (N,)
    label_ids: np.ndarray | None = field(default=None, repr=False)  # (N,) indices into class_names
    masks: np.ndarray | None = field(default=None, repr=False)  # (N, H, W) bool, when the head predicts them
    category_ids: list[int] = field(default_factory=list)  # COCO category id per label
    draw_threshold: float = 0.5  # scores drawn in overlays (all detections are saved)

    def coco_results(self) -> list[dict]:
        """COCO results dicts (``image_id``, ``category_id``, ``bbox`` XYWH, ``score``, RLE
        ``segmentation``), as evaluation writes them, plus the class name as ``label``."""
        import torch

        from ..metrics.detection import detections_to_coco, encode_masks

        rles = encode_masks(self.masks) if self.masks is not None else None
        results = detections_to_coco(int(self.image_id), torch.as_tensor(self.boxes),
                                     torch.as_tensor(self.scores), torch.as_tensor(self.label_ids),
                                     self.category_ids, rles)
        for res, label in zip(results, self.label_ids.tolist(), strict=True):
            res["label"] = self.class_names[int(label)]
        return results

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "detections": self.coco_results()}

    def draw(self) -> np.ndarray:
        from ..vis import add_legend, draw_boxes, overlay_labels

        keep = self.scores >= self.draw_threshold
        labels = self.label_ids[keep].tolist()
        pic = self.image
        if self.masks is not None and keep.any():
            label_map = np.full(self.image.shape[:2], 255, np.int64)
            for m, c in zip(self.masks[keep][::-1], labels[::-1], strict=True):
                label_map[m] = c  # best score drawn last
            pic = overlay_labels(pic, label_map)
        scale = _scale(self.image)
        if scale > 1:
            pic = np.asarray(Image.fromarray(pic).resize((pic.shape[1] * scale, pic.shape[0] * scale),
                                                         Image.NEAREST))
        pic = draw_boxes(pic, (self.boxes[keep] * scale).tolist(), [self.class_names[c] for c in labels],
                         scores=self.scores[keep].tolist(), colours=labels)
        return add_legend(pic, [(self.class_names[c], c) for c in sorted(set(labels))])


def write_predictions(predictions: Iterable[Prediction], directory: str | Path, *,
                      class_names: Sequence[str] = (), category_ids: Sequence[int] | None = None,
                      thing_classes: Sequence[bool] | None = None, texts: Sequence[str] = (),
                      writer: type[PredictionWriter] | None = None) -> tuple[list[str], list[Path]]:
    """Every prediction's own files plus the call's summary files (module docstring).

    ``predictions`` may be a generator: each one is written as it comes and only its summary row is kept,
    so a large folder never holds every picture in memory. The summary is written by ``writer`` (default:
    the first prediction's `Prediction.writer`); no prediction, no files. Returns ``(sources, written
    files)``.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    collector: PredictionWriter | None = None
    for pred in predictions:
        if collector is None:
            collector = (writer or pred.writer)(out, class_names=class_names, category_ids=category_ids,
                                                thing_classes=thing_classes, texts=texts)
        written += pred.save(out)
        collector.add(pred)
    if collector is None:
        return [], written
    return collector.sources, written + collector.close()


def _scale(image: np.ndarray) -> int:
    return max(1, 256 // max(image.shape[:2]))


def _save_png(array: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"))


def _json(path: Path, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=1) + "\n")


def _jsonl(path: Path, rows: Sequence[dict]) -> Path:
    return atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
