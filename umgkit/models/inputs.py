"""What the `Predictor` hands a model's ``predict``: the loaded images of one batch and the call's request.

A task model (built-in or registered from user code) turns a list of `PredictInput` into one `Prediction`
per input; the `PredictRequest` carries what the call asked for (top-k, query texts) and where to run.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

__all__ = ["PredictInput", "PredictRequest", "same_size_groups", "stack_images"]


class PredictInput(NamedTuple):
    """One readable input of a Predictor call."""

    source: str  # file path, or "image_<i>" for in-memory inputs
    image_id: int  # COCO-style id (the file stem when every stem is digits, else 1..N)
    rgb: np.ndarray  # (H, W, 3) uint8, the image as read (predictions map back to this size)
    image: torch.Tensor  # (3, h, w) float, after the model's preprocessing


@dataclass
class PredictRequest:
    """What one Predictor call asks of every batch."""

    device: torch.device  # where the model runs; move inputs here
    top_k: int = 5  # labels kept per image (classification-like tasks)
    texts: list[str] | None = None  # query texts of a model that ranks texts (`TaskModel.takes_texts`)
    state: dict[str, Any] | None = None  # what `TaskModel.start_predict` computes once per call


def stack_images(batch: Sequence[PredictInput], device: torch.device) -> torch.Tensor:
    """``(B, 3, h, w)`` on ``device`` from inputs of one preprocessed size."""
    return torch.stack([item.image for item in batch]).to(device)


def same_size_groups(batch: Sequence[PredictInput]) -> Iterator[list[PredictInput]]:
    """Runs of consecutive inputs whose preprocessed and stored sizes agree (stackable, one output size)."""
    group = [batch[0]]
    for item in batch[1:]:
        if item.image.shape == group[0].image.shape and item.rgb.shape == group[0].rgb.shape:
            group.append(item)
        else:
            yield group
            group = [item]
    yield group
