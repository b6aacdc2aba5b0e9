"""Models: backbone + adapter + head for one task, built from a config without reading a dataset, saved as
a self-describing model folder, and run on new images by the `Predictor`.

Example:
    >>> from umgkit.models import Predictor
    >>> predictor = Predictor.from_pretrained("runs/semantic")  # doctest: +SKIP
    >>> result = predictor("street.jpg", classes=["road", "car", "tree"])[0]  # doctest: +SKIP
    >>> result.save("out/")  # doctest: +SKIP
"""

from .base import TaskModel
from .build import build_backbone, build_model
from .classification import ClassificationModel
from .detection import DetectionModel
from .export import export_model
from .folder import load_model, resolve_model_source, save_model_folder
from .panoptic import PanopticModel
from .predictor import Predictor
from .preprocess import Preprocess
from .retrieval import RetrievalModel
from .semantic import SemanticModel

__all__ = ["TaskModel", "ClassificationModel", "RetrievalModel", "SemanticModel", "PanopticModel",
           "DetectionModel", "Preprocess", "Predictor", "build_backbone", "build_model", "export_model",
           "load_model", "resolve_model_source", "save_model_folder"]
