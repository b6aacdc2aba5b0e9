"""Base-to-novel generalisation: the harmonic mean of the base and novel accuracies (CoCoOp's "H").

A model is trained on the base classes (``data.fewshot.classes=base``) and evaluated on the base and on
the novel classes (``umgkit eval RUN data.fewshot.classes=novel``); the harmonic mean rewards doing well
on both, so a method cannot hide a collapse on novel classes behind a high base accuracy.
"""

from __future__ import annotations

import math

__all__ = ["harmonic_mean"]


def harmonic_mean(base: float, novel: float) -> float:
    """``2 * base * novel / (base + novel)`` in the unit of its inputs (percent in, percent out); 0 when
    both are 0. Accuracies are non-negative: a negative or non-finite value is an error."""
    base, novel = float(base), float(novel)
    if not (math.isfinite(base) and math.isfinite(novel)) or base < 0 or novel < 0:
        raise ValueError(f"harmonic_mean needs two non-negative accuracies; got base={base}, novel={novel}.")
    total = base + novel
    return 0.0 if total == 0 else 2.0 * base * novel / total
