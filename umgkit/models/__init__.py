"""Models: backbone + adapter + head for one task, built from a config without reading a dataset, saved as
a self-describing model folder, and run on new images by the `Predictor`.

Importing this package registers the built-in task models (one `TaskModel` subclass per task) in
`umgkit.registry.MODELS`.

Example:
    >>> from umgkit.models import Predictor
    >>> predictor = Predictor.from_pretrained("runs/semantic")  # doctest: +SKIP
    >>> result = predictor("street.jpg", classes=["road", "car", "tree"])[0]  # doctest: +SKIP
    >>> result.save("out/")  # doctest: +SKIP
"""

from .base import TaskModel
from .build import build_model, model_class
from .classification import ClassificationModel
from .detection import DetectionModel
from .export import export_model
from .folder import load_model, save_model_folder
from .inputs import PredictInput, PredictRequest
from .panoptic import PanopticModel
from .parts import build_backbone, build_dense_model, require_class_names
from .predictor import Predictor
from .preprocess import Preprocess
from .results import Prediction, PredictionWriter
from .retrieval import RetrievalModel
from .semantic import SemanticModel
from .source import resolve_model_source

__all__ = ["TaskModel", "ClassificationModel", "RetrievalModel", "SemanticModel", "PanopticModel",
           "DetectionModel", "Preprocess", "Predictor", "PredictInput", "PredictRequest", "Prediction",
           "PredictionWriter", "build_backbone", "build_dense_model", "build_model", "export_model",
           "load_model", "model_class", "require_class_names", "resolve_model_source", "save_model_folder"]
