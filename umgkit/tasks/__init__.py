"""Tasks (data + loss + metric + pictures around a `umgkit.models.TaskModel`), registered in `TASKS`."""

from .build import build_task
from .classification import ClassificationTask, build_classification_task
from .detection import DetectionTask, build_detection_task
from .panoptic import PanopticTask, build_panoptic_task
from .retrieval import RetrievalTask, build_retrieval_task
from .semantic import SemanticTask, build_semantic_task

__all__ = ["build_task",
           "SemanticTask", "build_semantic_task",
           "ClassificationTask", "build_classification_task",
           "RetrievalTask", "build_retrieval_task",
           "DetectionTask", "build_detection_task",
           "PanopticTask", "build_panoptic_task"]
