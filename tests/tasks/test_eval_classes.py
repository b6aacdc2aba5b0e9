"""Semantic and panoptic evaluation share one class-count check (`check_eval_classes`): a learned head whose
class count differs from the val set's is one user error naming both counts and the open-vocabulary fix."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from umgkit.errors import ConfigError
from umgkit.tasks.build import check_eval_classes
from umgkit.tasks.panoptic import PanopticTask
from umgkit.tasks.semantic import SemanticTask

MESSAGE = (r"model\.head_options: the head predicts 3 classes but the val set has 2; a learned classifier "
           r"needs the same class set \(or use head option classifier=open_vocab")


def _model(names: list[str]) -> SimpleNamespace:
    """What the tasks read of a model with a learned (closed-vocabulary) head."""
    return SimpleNamespace(class_names=names, thing_classes=[True] * len(names),
                           category_ids=list(range(1, len(names) + 1)), open_vocabulary=False,
                           preprocess=SimpleNamespace(mean=(0.5,) * 3, std=(0.5,) * 3))


def test_the_check_passes_equal_counts_and_names_both_counts_otherwise():
    check_eval_classes(_model(["a", "b"]), ["x", "y"])  # relabelled outputs: same count is enough
    with pytest.raises(ConfigError, match=MESSAGE):
        check_eval_classes(_model(["a", "b", "c"]), ["x", "y"])


@pytest.mark.parametrize("build", [
    lambda model, val: SemanticTask(model=model, train_dataset=None, val_dataset=val,
                                    options={"class_weights": None}),
    lambda model, val: PanopticTask(model=model, train_dataset=None, val_dataset=val, options={},
                                    criterion=None),
], ids=["semantic", "panoptic"])
def test_semantic_and_panoptic_evaluation_refuse_a_head_of_another_class_count(build):
    val = SimpleNamespace(class_names=["x", "y"], thing_classes=[True, False])
    task = build(_model(["a", "b", "c"]), val)
    accelerator = SimpleNamespace(unwrap_model=lambda m: m, device="cpu")
    with pytest.raises(ConfigError, match=MESSAGE):
        task.evaluate(task.model, loader=[], accelerator=accelerator)
