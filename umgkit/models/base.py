"""`TaskModel`: backbone (+ adapter) and head for one task, with everything needed to use it alone.

A model keeps its `Adapter` handle, class names, preprocessing and the run config it was built from, so
it can be saved as a model folder, evaluated, or run on new images without its training data. Subclasses
(one per task) add the forward pass and the task's inference (sliding windows, panoptic merging, ...).

A subclass is the task's entry in `umgkit.registry.MODELS` (register the class itself): `build_model` calls
its `from_config`, the `Predictor` its `predict`, which returns its `prediction` type, and ``umgkit predict``
writes those with that type's `writer`. The built-in tasks use exactly this; a task registered from user
code works in every command the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from torch import nn

from ..config import Option
from ..errors import ModelError
from .inputs import PredictInput, PredictRequest
from .preprocess import Preprocess
from .results import Prediction

__all__ = ["TaskModel", "OPEN_VOCAB_KINDS", "FIXED_VOCAB_KINDS", "inference_options"]

OPEN_VOCAB_KINDS = ("open_vocab", "region_embed", "text_init", "pixel_text", "clip")
# Rows fitted to the training images of their own classes (Tip-Adapter's cache, LP++'s prototypes): the
# head's own set_class_names refuses other names, even as a relabelling.
FIXED_VOCAB_KINDS = ("few_shot",)


def inference_options(declared: Mapping[str, Option], given: Mapping[str, Any] | None) -> dict[str, Any]:
    """The declared inference options out of a task's ``task_options`` (defaults where absent).

    Only these keys are read here; the task validates the whole mapping when it is built.
    """
    given = dict(given or {})
    return {name: given.get(name, option.default) for name, option in declared.items()}


class TaskModel(nn.Module):
    """``backbone`` (frozen, adapter applied in place) + ``head``; see the module docstring.

    ``thing_classes`` (panoptic) and ``category_ids`` (COCO category id per label, detection / panoptic)
    are per-class metadata the predictions are written with; both follow `set_class_names`.
    """

    task: ClassVar[str] = ""  # the name it is registered under in MODELS (and the run config's ``task``)
    # The task whose heads it takes (HEADS declare tasks): a subclass registered as a new task keeps its
    # base's heads. Empty: its own ``task``.
    head_task: ClassVar[str] = ""
    inference_defaults: ClassVar[Mapping[str, Option]] = {}  # the task's INFERENCE_OPTIONS
    prediction: ClassVar[type[Prediction]] = Prediction  # what `predict` returns, one per image
    takes_texts: ClassVar[bool] = False  # predictions rank query texts (Predictor(texts=...) required)
    pipeline_tag: ClassVar[str] = "image-feature-extraction"  # Hugging Face pipeline tag of the model card

    def __init__(self, backbone: nn.Module, head: nn.Module, *, preprocess: Preprocess | None = None,
                 class_names: Sequence[str] = (), adapter: Any = None, config: Any = None,
                 thing_classes: Sequence[bool] | None = None,
                 category_ids: Sequence[int] | None = None) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head
        self.adapter = adapter  # umgkit.adapters.Adapter: save / merge the PET method
        # default: the backbone's normalisation at 224 px (`build_model` always sets the task's own)
        self.preprocess = preprocess or Preprocess(224, getattr(backbone, "image_mean", (0.0, 0.0, 0.0)),
                                                   getattr(backbone, "image_std", (1.0, 1.0, 1.0)))
        self.config = config  # the RunConfig the model was built from
        self.class_names = list(class_names)
        self.thing_classes = None if thing_classes is None else [bool(t) for t in thing_classes]
        self.category_ids = None if category_ids is None else [int(c) for c in category_ids]

    @classmethod
    def from_config(cls, cfg: Any, class_names: Sequence[str] | None = None, *,
                    thing_classes: Sequence[bool] | None = None,
                    category_ids: Sequence[int] | None = None) -> TaskModel:
        """The model of ``cfg`` (a RunConfig) for ``class_names``, reading no dataset; `build_model` calls
        it with the weights' random generator seeded from ``cfg.seed``."""
        raise NotImplementedError(f"{cls.__name__} is registered in MODELS but defines no from_config; "
                                  "build the backbone with umgkit.models.build_backbone and return cls(...).")

    def start_predict(self, request: PredictRequest) -> None:
        """Called once per Predictor call before the first batch; store what every batch reuses (e.g. the
        query texts' embeddings) in ``request.state``."""

    def predict(self, batch: list[PredictInput], request: PredictRequest) -> list[Prediction]:
        """One `prediction` per input of ``batch``, in order (no gradients are recorded here)."""
        raise NotImplementedError(f"{type(self).__name__} cannot predict: define predict(batch, request) "
                                  f"returning one {self.prediction.__name__} per input.")

    def option(self, name: str) -> Any:
        """The inference option ``name`` from the preprocessing, else its declared default."""
        return self.preprocess.inference.get(name, self.inference_defaults[name].default)

    @property
    def classifier_kind(self) -> str:
        return getattr(self.head, "classifier_kind", "learned")

    @property
    def open_vocabulary(self) -> bool:
        """Whether new class names can be given at inference (the text tower re-encodes them)."""
        return self.classifier_kind in OPEN_VOCAB_KINDS

    def set_class_names(self, names: Sequence[str]) -> None:
        """Use ``names`` as the vocabulary: re-encoded for an open-vocabulary head; for a learned head the
        count must equal the head's classes (the names then only relabel its outputs)."""
        names = [str(n).strip() for n in names]
        if not names or any(not n for n in names):
            raise ModelError(f"class names {names!r}: give at least one non-empty name.")
        if names == self.class_names:
            return
        if self.classifier_kind in FIXED_VOCAB_KINDS:
            self.head.set_class_names(names)  # raises ModelError: its rows belong to its own classes
        if not self.open_vocabulary:
            self._relabel(names)
            return
        self.head.set_class_names(names)
        old_thing = dict(zip(self.class_names, self.thing_classes or [], strict=False))
        if self.thing_classes is not None:
            self.thing_classes = [old_thing.get(n, True) for n in names]  # unknown names: countable things
        if self.category_ids is not None:
            old_ids = dict(zip(self.class_names, self.category_ids, strict=False))
            self.category_ids = (list(range(1, len(names) + 1)) if any(n not in old_ids for n in names)
                                 else [old_ids[n] for n in names])
        self.class_names = names

    def _relabel(self, names: list[str]) -> None:
        """A learned head keeps its outputs; names (and their per-class metadata) stay index-aligned."""
        if len(names) != len(self.class_names):
            shown = ", ".join(self.class_names[:8]) + (", ..." if len(self.class_names) > 8 else "")
            head = self.config.model.head if self.config is not None else ""
            raise ModelError(
                f"this {self.task} model's head {head or '(the default)'} has a learned, closed-vocabulary "
                f"classifier over {len(self.class_names)} classes ({shown}); {len(names)} class names were "
                f"given (--classes / classes=). Give exactly {len(self.class_names)} names to relabel its "
                f"outputs, or train an open-vocabulary head ({_open_vocabulary_hint(self.task)}) to name new "
                "classes.")
        self.class_names = names


def _open_vocabulary_hint(task: str) -> str:
    return "model.head=text_init" if task == "classification" else "model.head_options.classifier=open_vocab"
