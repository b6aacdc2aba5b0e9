"""VTAB-1k: the 19 task names in their three groups, and a results table with both conventions.

Papers report VTAB-1k two ways: the plain mean over all 19 tasks, and the *group mean* (the mean of the
natural / specialized / structured group means, which weights the 4 specialized tasks as much as the 8
structured ones). `vtab_table` prints both so numbers can be compared with either kind of paper.
"""

from __future__ import annotations

import math

__all__ = ["VTAB_GROUPS", "VTAB_TASKS", "vtab_summary", "vtab_table"]

VTAB_GROUPS: dict[str, tuple[str, ...]] = {
    "natural": ("cifar100", "caltech101", "dtd", "oxford_flowers102", "oxford_iiit_pet", "svhn", "sun397"),
    "specialized": ("patch_camelyon", "eurosat", "resisc45", "diabetic_retinopathy"),
    "structured": ("clevr_count", "clevr_distance", "dmlab", "kitti_distance", "dsprites_location",
                   "dsprites_orientation", "smallnorb_azimuth", "smallnorb_elevation"),
}
VTAB_TASKS: tuple[str, ...] = tuple(t for group in VTAB_GROUPS.values() for t in group)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def vtab_summary(results: dict[str, float]) -> dict[str, float]:
    """Group means, ``mean19`` (over all 19 tasks) and ``group_mean`` (mean of the 3 group means).

    Every one of the 19 tasks must be present (a partial table would silently change both means);
    unknown names raise too.
    """
    unknown = sorted(set(results) - set(VTAB_TASKS))
    missing = [t for t in VTAB_TASKS if t not in results]
    if unknown or missing:
        raise ValueError(f"VTAB results: unknown tasks {unknown}, missing tasks {missing}; expected the 19 "
                         f"names of umgkit.metrics.vtab.VTAB_TASKS.")
    out = {group: _mean([float(results[t]) for t in tasks]) for group, tasks in VTAB_GROUPS.items()}
    out["mean19"] = _mean([float(results[t]) for t in VTAB_TASKS])
    out["group_mean"] = _mean([out[g] for g in VTAB_GROUPS])
    return out


def vtab_table(results: dict[str, float], scale: float = 100.0) -> str:
    """Plain-text table: one row per task (grouped), each group mean, the 19-task mean and the group mean.

    ``results`` maps task name -> top-1 in [0, 1]; printed values are multiplied by ``scale`` (percent).
    """
    summary = vtab_summary(results)
    width = max(len(t) for t in VTAB_TASKS) + 2
    lines = [f"{'task':<{width}}top1"]
    for group, tasks in VTAB_GROUPS.items():
        lines.append(f"[{group}]")
        lines += [f"{t:<{width}}{float(results[t]) * scale:6.2f}" for t in tasks]
        lines.append(f"{group + ' mean':<{width}}{summary[group] * scale:6.2f}")
    lines.append(f"{'mean (19 tasks)':<{width}}{summary['mean19'] * scale:6.2f}")
    lines.append(f"{'group mean (3)':<{width}}{summary['group_mean'] * scale:6.2f}")
    if any(math.isnan(v) for v in summary.values()):
        lines.append("(nan: a result was not a number)")
    return "\n".join(lines)
