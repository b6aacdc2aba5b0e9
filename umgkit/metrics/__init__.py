"""Dataset-level metrics computed as the reference tools compute them."""

from .classification import classification_metrics, confusion_matrix, per_class_accuracy, topk_accuracy
from .detection import coco_evaluate, coco_gt_from_targets, detections_to_coco, encode_masks, write_results
from .fewshot import harmonic_mean
from .panoptic import pq_compute_files, pq_image_counts, pq_summary, read_panoptic_png, write_panoptic_png
from .retrieval import caption_ranks, image_ranks, retrieval_metrics
from .segmentation import ConfusionMatrix, segmentation_confusion_matrix, segmentation_scores
from .vtab import VTAB_GROUPS, VTAB_TASKS, vtab_summary, vtab_table

__all__ = ["ConfusionMatrix", "segmentation_confusion_matrix", "segmentation_scores",
           "classification_metrics", "confusion_matrix", "per_class_accuracy", "topk_accuracy",
           "harmonic_mean", "VTAB_GROUPS", "VTAB_TASKS", "vtab_summary", "vtab_table",
           "caption_ranks", "image_ranks", "retrieval_metrics",
           "coco_evaluate", "coco_gt_from_targets", "detections_to_coco", "encode_masks", "write_results",
           "pq_compute_files", "pq_image_counts", "pq_summary", "read_panoptic_png", "write_panoptic_png"]
