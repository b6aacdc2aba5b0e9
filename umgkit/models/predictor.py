"""`Predictor`: a model plus its preprocessing and post-processing, called on files, PIL images or tensors.

``umgkit predict``, ``umgkit eval`` (through the tasks, which call the same model methods), the demo's
pictures and the app all run a model this way, so their numbers agree. The Predictor reads and preprocesses
the inputs; the model's own ``predict`` (its class is the task's entry in `umgkit.registry.MODELS`) turns a
batch into predictions, so a task registered from user code predicts like a built-in one.

Example:
    >>> predictor = Predictor.from_pretrained("runs/semantic")  # doctest: +SKIP
    >>> [pred] = predictor(["street.png"], classes=["road", "car", "tree"])  # doctest: +SKIP
    >>> pred.areas(), pred.save("preds/")  # doctest: +SKIP
"""

from __future__ import annotations

import glob
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .._io import check_output_folder
from ..data.classification import IMAGE_EXTENSIONS
from ..data.images import BadSampleError, load_image
from ..errors import ModelError
from .base import TaskModel
from .inputs import PredictInput, PredictRequest
from .results import Prediction, write_predictions

__all__ = ["Predictor", "expand_inputs"]

ImageInput = str | os.PathLike | Image.Image | torch.Tensor | np.ndarray


class Predictor:
    """Runs ``model`` on images; see the module docstring.

    ``top_k`` (classification) is the number of labels kept per image; ``batch_size`` images go through the
    model at once (default: the config's ``data.eval_batch_size``, as evaluation batches; dense tasks batch
    only images of one size, as evaluation does).
    """

    def __init__(self, model: TaskModel | Any, *, class_names: Sequence[str] | None = None,
                 device: str | torch.device | None = None, batch_size: int | None = None,
                 top_k: int = 5) -> None:
        if not isinstance(model, TaskModel):  # a RunConfig: a model with no training (zero-shot heads)
            from .build import build_model

            model = build_model(model, class_names)
        elif class_names is not None:
            model.set_class_names(class_names)
        self.device = _device(device) if device is not None else _default_device()
        self.model = model.eval().to(self.device)
        self.transform = model.preprocess.transform()
        data = getattr(model.config, "data", None)
        default = (data.eval_batch_size or data.batch_size) if data is not None else 8
        self.batch_size, self.top_k = int(batch_size or default), int(top_k)
        if self.batch_size < 1 or self.top_k < 1:
            raise ModelError(f"batch_size={self.batch_size} and top_k={self.top_k} must be >= 1.")
        self.skipped: list[tuple[str, str]] = []  # (input, reason) of the last call with skip_bad

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, overrides: Iterable[str] = (),
                        class_names: Sequence[str] | None = None, **kwargs: Any) -> Predictor:
        """From a run folder, a model folder, a checkpoint folder, or a config file (zero-shot: the model is
        built untrained, e.g. a ``text_init`` classifier on a pretrained backbone; give ``class_names``)."""
        from .folder import load_model, resolve_model_source

        source = resolve_model_source(path)
        if source.kind == "config":
            from ..config import load_config

            cfg = load_config(source.path, list(overrides))
            return cls(cfg, class_names=class_names or _config_class_names(cfg), **kwargs)
        return cls(load_model(source, overrides=overrides), class_names=class_names, **kwargs)

    @property
    def task(self) -> str:
        return self.model.task

    @property
    def class_names(self) -> list[str]:
        return list(self.model.class_names)

    def set_classes(self, names: Sequence[str]) -> None:
        """New vocabulary for every later call (open-vocabulary heads re-encode only the text)."""
        self.model.set_class_names(names)

    # ------------------------------------------------------------------------------------------------ call
    def __call__(self, inputs: ImageInput | Sequence[ImageInput], *, classes: Sequence[str] | None = None,
                 texts: Sequence[str] | None = None, skip_bad: bool = False,
                 progress: bool = False) -> list[Prediction]:
        """One prediction per readable input, in input order. Paths may be files, folders (their images,
        sorted) or glob patterns. ``classes`` changes the vocabulary first (`set_classes`); ``texts`` are
        the queries of a retrieval model. Unreadable images raise, or with ``skip_bad`` are left out and
        listed in ``self.skipped``."""
        return list(self.iter_predictions(inputs, classes=classes, texts=texts, skip_bad=skip_bad,
                                          progress=progress))

    def predict_to(self, inputs: ImageInput | Sequence[ImageInput], directory: str | os.PathLike,
                   **kwargs: Any) -> tuple[list[str], list[Path]]:
        """Predict and write what ``umgkit predict`` writes into ``directory``, one batch at a time (nothing
        but summary rows is kept); returns ``(predicted sources, written files)``. When every input was
        skipped (``skip_bad``) it raises instead of leaving an empty result behind."""
        directory = check_output_folder(directory, "the output folder (--out)")
        if kwargs.get("classes") is not None:  # before the summary files read the vocabulary
            self.set_classes(kwargs.pop("classes"))
        stream = self.iter_predictions(inputs, **kwargs)
        m = self.model
        created = not directory.exists()
        sources, files = write_predictions(stream, directory, class_names=m.class_names,
                                           category_ids=m.category_ids, thing_classes=m.thing_classes,
                                           texts=kwargs.get("texts") or (), writer=m.prediction.writer)
        if not sources and self.skipped:  # every input was skipped: an empty result is no result
            if created:
                shutil.rmtree(directory, ignore_errors=True)
            reason = self.skipped[0][1]
            raise ModelError(f"no image could be read: all {len(self.skipped)} inputs were skipped as "
                             f"unreadable (first: {reason}). Check the input paths.")
        return sources, files

    @torch.no_grad()
    def iter_predictions(self, inputs: ImageInput | Sequence[ImageInput], *,
                         classes: Sequence[str] | None = None, texts: Sequence[str] | None = None,
                         skip_bad: bool = False, progress: bool = False) -> Iterator[Prediction]:
        """`__call__` as a generator: predictions come out batch by batch."""
        if classes is not None:
            self.set_classes(classes)
        if texts and not self.model.takes_texts:
            raise ModelError(f"texts are queries for a model that ranks texts (retrieval); this is a "
                             f"{self.task} model (name its classes with classes=[...] / --classes instead).")
        request = PredictRequest(self.device, top_k=self.top_k, texts=list(texts) if texts else None)
        self.model.start_predict(request)
        items = expand_inputs(inputs)
        ids = _image_ids(items)
        self.skipped = []
        from tqdm.auto import tqdm

        loaded: list[PredictInput] = []
        with tqdm(total=len(items), desc=f"predict {self.task}", disable=not progress,
                  dynamic_ncols=True) as bar:
            for index, item in enumerate(items):
                try:
                    source, image = _read(item, index)
                except BadSampleError as err:
                    if not skip_bad:
                        raise ModelError(f"{err.plain} Or pass --skip-bad (skip_bad=True) to list such "
                                         "images and predict the rest.") from err
                    self.skipped.append((str(item), err.plain))
                    bar.update(1)
                    continue
                model_input = self.transform({"image": image})["image"]
                rgb = (image.permute(1, 2, 0) * 255).round().byte().numpy()
                loaded.append(PredictInput(source, ids[index], rgb, model_input))
                if len(loaded) == self.batch_size or index == len(items) - 1:
                    yield from self.model.predict(loaded, request)
                    bar.update(len(loaded))
                    loaded = []
            if loaded:  # the last input was skipped
                yield from self.model.predict(loaded, request)
                bar.update(len(loaded))


# ---------------------------------------------------------------------------------------------- inputs
def expand_inputs(inputs: ImageInput | Sequence[ImageInput]) -> list[ImageInput]:
    """Folders become the image files below them (recursively, sorted), globs their matches; other inputs
    pass through."""
    if isinstance(inputs, (str, os.PathLike, Image.Image, torch.Tensor, np.ndarray)):
        inputs = [inputs]
    out: list[ImageInput] = []
    for item in inputs:
        if not isinstance(item, (str, os.PathLike)):
            out.append(item)
            continue
        path = Path(item).expanduser()
        if path.is_dir():
            # recursive: an ImageFolder split keeps its images in one sub-folder per class
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
            if not found:
                raise ModelError(f"{path} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))}).")
            out += [str(p) for p in found]
        elif not path.exists() and any(ch in str(item) for ch in "*?["):
            matches = sorted(glob.glob(str(path), recursive=True))
            if not matches:
                raise ModelError(f"the pattern {item} matches no file.")
            out += matches
        else:
            out.append(str(path))  # a missing file is reported when it is read (or skipped)
    if not out:
        raise ModelError("no input images were given.")
    return out


def _image_ids(items: list[ImageInput]) -> list[int]:
    """COCO-style ids: every file stem when all are distinct digit strings (COCO names), else 1..N."""
    stems = [Path(str(i)).stem if isinstance(i, (str, os.PathLike)) else "" for i in items]
    if all(s.isdigit() for s in stems) and len({int(s) for s in stems}) == len(stems):
        return [int(s) for s in stems]
    return list(range(1, len(items) + 1))


def _read(item: ImageInput, index: int) -> tuple[str, torch.Tensor]:
    """``(name, (3, H, W) float in [0, 1])`` from a path, a PIL image, an array or a tensor."""
    if isinstance(item, (str, os.PathLike)):
        return str(item), load_image(item)
    name = f"image_{index}"
    if isinstance(item, Image.Image):
        item = np.asarray(item.convert("RGB"))
    if isinstance(item, np.ndarray):
        if item.ndim != 3 or item.shape[2] != 3:
            raise ModelError(f"input {index}: an array image must be (H, W, 3) RGB, got {item.shape}.")
        pixels = torch.from_numpy(np.array(item)).permute(2, 0, 1).float()  # a copy: arrays may be read-only
        return name, pixels.div(255.0) if item.dtype == np.uint8 else pixels
    if isinstance(item, torch.Tensor):
        if item.dim() != 3 or item.shape[0] != 3:
            raise ModelError(f"input {index}: a tensor image must be (3, H, W), got {tuple(item.shape)}.")
        t = item.detach().cpu()
        return name, t.float().div(255.0) if t.dtype == torch.uint8 else t.float()
    raise ModelError(f"input {index} is a {type(item).__name__}; give paths, PIL images, arrays or tensors.")


def _device(name: str | torch.device) -> torch.device:
    """``name`` as a device this machine has; a typo or an absent accelerator is the user's to fix."""
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ModelError(f"device {name!r} is not a device name ({err}); give cpu, cuda or cuda:N "
                         "(--device).") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {name!r}: this machine has no CUDA GPU torch can use; give --device cpu.")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ModelError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                         f"numbered from 0; give --device cuda:0.")
    return device


def _config_class_names(cfg: Any) -> list[str] | None:
    if cfg.data.class_names:
        from ..data.images import read_lines

        return read_lines(Path(cfg.data.class_names))
    return None


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
