"""What a model does to an image before its forward pass, as data (``preprocess.json`` in a model folder).

Evaluation and prediction build their transform from the same `Preprocess`, so ``umgkit eval`` and
``umgkit predict`` feed the model the same tensors for the same file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from torchvision.transforms import v2

from ..data.transforms import JointTransform, build_transforms

__all__ = ["Preprocess", "RESIZE_POLICIES"]

# shorter_crop: shorter side to image_size, then a centre crop (CLIP / timm classification);
# shorter: shorter side to image_size, aspect kept (dense tasks); square: image_size x image_size;
# none: the stored resolution, normalised only
RESIZE_POLICIES = ("shorter_crop", "shorter", "square", "none")


@dataclass
class Preprocess:
    """Resize policy, size and normalisation of a model's inputs; predictions map back to the stored size."""

    image_size: int  # side in pixels that the resize policy targets
    mean: tuple[float, float, float]  # per-channel mean subtracted from [0, 1] RGB
    std: tuple[float, float, float]  # per-channel standard deviation divided by
    resize: str = "shorter"  # one of RESIZE_POLICIES
    inference: dict[str, Any] = field(default_factory=dict)  # task post-processing options (thresholds, ...)

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_POLICIES:
            raise ValueError(f"preprocess resize={self.resize!r}; choose one of "
                             f"{', '.join(RESIZE_POLICIES)}.")
        self.image_size = int(self.image_size)
        self.mean, self.std = tuple(float(v) for v in self.mean), tuple(float(v) for v in self.std)

    def transform(self) -> JointTransform:
        """``{"image": (3, H, W) float in [0, 1]} -> {"image": normalised, resized}`` (the eval transform)."""
        if self.resize == "none":
            return JointTransform([v2.Normalize(mean=list(self.mean), std=list(self.std))])
        if self.resize == "shorter_crop":
            return build_transforms("classification", train=False, image_size=self.image_size, mean=self.mean,
                                    std=self.std)
        return build_transforms("dense", train=False, image_size=self.image_size, mean=self.mean,
                                std=self.std, eval_resize=self.resize)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["mean"], out["std"] = list(self.mean), list(self.std)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocess:
        known = {"image_size", "mean", "std", "resize", "inference"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"preprocess.json has unknown keys {unknown}; valid: {sorted(known)}.")
        return cls(**data)
