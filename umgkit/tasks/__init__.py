"""Tasks (data + head + loss + metric + visualisation), registered in `umgkit.registry.TASKS`."""

from .classification import ClassificationModel, ClassificationTask, build_classification_task
from .retrieval import RetrievalTask, build_retrieval_task
from .semantic import SemanticModel, SemanticTask, build_semantic_task

__all__ = ["SemanticModel", "SemanticTask", "build_semantic_task",
           "ClassificationModel", "ClassificationTask", "build_classification_task",
           "RetrievalTask", "build_retrieval_task"]
