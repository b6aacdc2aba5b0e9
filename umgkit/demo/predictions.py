"""The demo's task pictures: each trained stage's model folder run by the `Predictor` on held-out images,
exactly as ``umgkit predict OUTPUT_DIR IMAGES --out OUTPUT_DIR/predict`` would."""

from __future__ import annotations

from pathlib import Path

from .stages import StageResult

__all__ = ["VAL_IMAGES", "predict_examples"]

# held-out images of the synthetic world, per task stage (retrieval shows its rankings picture instead)
VAL_IMAGES = {"classification": "imagefolder/val/*/*.png", "semantic": "ade/images/validation/*.png",
              "panoptic": "coco/val/*.png", "detection": "coco/val/*.png"}


def predict_examples(result: StageResult, count: int = 3) -> list[Path]:
    """Overlays (with legends) of the stage's predictions on its first ``count`` held-out world images."""
    from ..models import Predictor

    pattern = VAL_IMAGES.get(result.stage.name)
    if pattern is None or result.world is None:
        return []
    files = sorted(Path(result.world).glob(pattern))[:count]
    if not files:
        return []
    out = result.output_dir / "predict"
    sources, _ = Predictor.from_pretrained(result.output_dir).predict_to([str(f) for f in files], out)
    return [out / "overlays" / f"{Path(source).stem}.png" for source in sources]
