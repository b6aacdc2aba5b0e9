"""Training losses shared by tasks and pretraining."""

from ._gather import distributed_ready, gather_rows, gather_rows_nograd, gather_with_grad, process_share
from .contrastive import MAX_LOGIT_SCALE, clip_logits, clip_loss

__all__ = ["MAX_LOGIT_SCALE", "clip_logits", "clip_loss", "distributed_ready", "gather_rows",
           "gather_rows_nograd", "gather_with_grad", "process_share"]
