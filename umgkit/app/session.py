"""What `umgkit serve` does per request, without the web page: one `Predictor` per task, and a request =
image + class names + task -> the files of ``umgkit predict``, an overlay to show and a table of numbers.

A model folder, run or ``hf-hub:`` name serves its own task. A bare backbone with a text tower
(``umg:``, ``openclip:``, ``hf:``) is used zero-shot: ``semantic`` (every pixel against the class
prompts, the ``pixel_text`` head) and ``classification`` (the image against them, ``text_init``). Each
request's class names go to `Predictor.set_classes`, which re-encodes only the text for an
open-vocabulary head.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.images import BadSampleError, open_checked
from ..errors import ModelError, UmgkitError

__all__ = ["ServeSession", "ServeResult", "parse_classes", "ZERO_SHOT_TASKS"]

# zero-shot task -> (head, head options) on a bare backbone
ZERO_SHOT_TASKS = {
    "semantic": ("pixel_text", {"templates": ["a photo of a {}."]}),
    "classification": ("text_init", {"templates": ["a photo of a {}."], "logit_scale": "backbone"}),
}
_BACKBONE_PREFIXES = ("umg:", "openclip:", "hf:", "timm:")


def parse_classes(text: str | None) -> list[str]:
    """``"cat, dog,, cat"`` -> ``["cat", "dog"]``: comma separated, trimmed, empty and repeated dropped."""
    names = [n.strip() for n in (text or "").split(",")]
    return list(dict.fromkeys(n for n in names if n))


@dataclass
class ServeResult:
    """One request's answer: ``message`` is set (and the rest empty) when the request was refused."""

    message: str = ""
    overlay: Path | None = None  # the overlay PNG with a legend, as `umgkit predict` writes it
    columns: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)  # per-class areas / scores, per segment / box
    archive: Path | None = None  # a zip of every file `umgkit predict` writes for this image
    seconds: float = 0.0


class ServeSession:
    """Predictors for ``source`` (built on first use per task) and the request logic of the page."""

    def __init__(self, source: str, *, image_size: int | None = None, device: str | None = None,
                 work_dir: str | Path | None = None) -> None:
        self.source, self.image_size, self.device = str(source), image_size, device
        self.work_dir = Path(work_dir or tempfile.mkdtemp(prefix="umgkit-serve-"))
        self._predictors: dict[str, Any] = {}
        self._requests = 0
        self.bare_backbone = self.source.startswith(_BACKBONE_PREFIXES) and not Path(self.source).exists()
        if self.bare_backbone:
            if self.source.startswith("timm:"):
                raise ModelError(f"{self.source} is an image-only backbone: zero-shot queries need a text "
                                 "tower (umg:, openclip:, hf:); serve a model trained on it instead.")
            self.tasks = list(ZERO_SHOT_TASKS)
        else:
            from ..models import Predictor

            predictor = Predictor.from_pretrained(self.source, device=device)
            self._predictors[predictor.task] = predictor
            self.tasks = [predictor.task]

    @property
    def default_classes(self) -> list[str]:
        """The served model's own class names (empty for a bare backbone)."""
        return [] if self.bare_backbone else self._predictors[self.tasks[0]].class_names

    def predictor(self, task: str, classes: list[str]) -> Any:
        """The task's predictor; a zero-shot one is built on first use with these class names."""
        if task not in self._predictors:
            from ..models import Predictor

            self._predictors[task] = Predictor(self._zero_shot_config(task), class_names=classes,
                                               device=self.device)
        return self._predictors[task]

    def _zero_shot_config(self, task: str) -> Any:
        from ..backbones import create_backbone
        from ..config import config_from_dict

        size = self.image_size or max(create_backbone(self.source).image_size)
        head, options = ZERO_SHOT_TASKS[task]
        return config_from_dict({
            "task": task, "output_dir": str(self.work_dir / "zeroshot"),
            "model": {"backbone": self.source, "adapter": "frozen", "head": head, "head_options": options},
            "data": {"image_size": int(size), "batch_size": 1}})

    def run(self, image: str | Path | None, classes_text: str | None, task: str | None) -> ServeResult:
        """Predict ``image`` with ``task`` and the comma-separated ``classes_text``; a bad request gives a
        result with only ``message`` set, never an exception."""
        if not image:
            return ServeResult(message="No image: upload one or pick an example.")
        classes = parse_classes(classes_text)
        if not classes:
            return ServeResult(message="No class names: type at least one, comma separated (e.g. circle, "
                                       "square).")
        if task not in self.tasks:
            return ServeResult(message=f"This model does not do {task!r}; it does {', '.join(self.tasks)}.")
        try:
            open_checked(Path(image))
        except BadSampleError as err:
            return ServeResult(message=f"Cannot read the uploaded image {Path(image).name}: "
                                       f"{_reason(err)}. Upload a PNG, JPEG or WebP file.")
        self._requests += 1
        out = self.work_dir / f"request_{self._requests:05d}"
        start = time.perf_counter()
        try:
            predictor = self.predictor(task, classes)
            sources, files = predictor.predict_to([str(image)], out / "predictions", classes=classes)
        except UmgkitError as err:  # unreadable image, class count of a fixed head, ...
            shutil.rmtree(out, ignore_errors=True)
            return ServeResult(message=str(err))
        seconds = time.perf_counter() - start
        overlays = [f for f in files if f.parent.name == "overlays"]
        columns, rows = _table(task, out / "predictions")
        archive = Path(shutil.make_archive(str(out / "predictions"), "zip", out / "predictions"))
        return ServeResult(message=f"{task}: {len(classes)} class names, {seconds:.2f} s", seconds=seconds,
                           overlay=overlays[0] if overlays else None, columns=columns, rows=rows,
                           archive=archive)


def _reason(err: Exception) -> str:
    """The reader's reason in parentheses ("image file is truncated"), else its whole message."""
    text = str(err)
    return text[text.find("(") + 1:text.find(")")] if "(" in text and ")" in text else text


def _table(task: str, folder: Path) -> tuple[list[str], list[list[Any]]]:
    """The numbers of the written summary file, as table rows (the page shows what the files say)."""
    if task == "semantic":
        body = json.loads((folder / "predictions.json").read_text(encoding="utf-8"))
        areas = body["images"][0]["areas"]
        return ["class", "area"], [[name, round(share, 6)] for name, share in
                                   sorted(areas.items(), key=lambda kv: -kv[1])]
    if task == "classification":
        row = json.loads((folder / "predictions.jsonl").read_text(encoding="utf-8").splitlines()[0])
        return ["class", "score"], [[n, s] for n, s in zip(row["labels"], row["scores"], strict=True)]
    if task == "panoptic":
        body = json.loads((folder / "panoptic.json").read_text(encoding="utf-8"))
        names = {c["id"]: c["name"] for c in body["categories"]}
        segments = body["annotations"][0]["segments_info"]
        return ["segment", "class", "area", "score"], [
            [s["id"], names[s["category_id"]], s["area"], round(float(s.get("score", 0.0)), 4)]
            for s in segments]
    if task == "detection":
        rows = json.loads((folder / "detections.json").read_text(encoding="utf-8"))
        names = {c["id"]: c["name"] for c in json.loads((folder / "images.json").read_text(
            encoding="utf-8"))["categories"]}
        return ["class", "score", "box (x, y, w, h)"], [
            [names[r["category_id"]], round(r["score"], 4), [round(v, 1) for v in r["bbox"]]] for r in rows]
    return [], []
