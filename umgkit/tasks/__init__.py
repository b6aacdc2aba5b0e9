"""Tasks (data + head + loss + metric + visualisation), registered in `umgkit.registry.TASKS`."""

from .classification import ClassificationModel, ClassificationTask, build_classification_task
from .detection import DetectionModel, DetectionTask, build_detection_task
from .panoptic import PanopticModel, PanopticTask, build_panoptic_task
from .retrieval import RetrievalTask, build_retrieval_task
from .semantic import SemanticModel, SemanticTask, build_semantic_task

__all__ = ["SemanticModel", "SemanticTask", "build_semantic_task",
           "ClassificationModel", "ClassificationTask", "build_classification_task",
           "RetrievalTask", "build_retrieval_task",
           "DetectionModel", "DetectionTask", "build_detection_task",
           "PanopticModel", "PanopticTask", "build_panoptic_task"]
