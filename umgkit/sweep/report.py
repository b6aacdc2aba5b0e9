"""The sweep's summary, rebuilt from the sweep folder alone (``umgkit sweep --report DIR``).

From ``sweep.json`` and every ``final/<cell>/seed<k>/trial.json``:

- ``table.csv``: one row per method and dataset/task: the metric's mean and sample standard deviation
  over the seeds (``n`` runs), trainable parameters, mean peak memory (MiB; ``peak_memory_kind`` says CUDA
  max allocated or the process's max RSS on CPU) and mean seconds per run;
- ``table.md``: the same as a markdown table, ``mean +- std``;
- ``pareto.png``: per dataset/task (and setting), the metric against trainable parameters (log axis), one
  point per method, with the Pareto front (no method both smaller and better) drawn as a line.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

from .trial import read_trial

__all__ = ["collect_rows", "write_report", "COLUMNS"]

COLUMNS = ("method", "dataset", "setting", "metric", "mean", "std", "n", "trainable_params",
           "peak_memory_mib", "peak_memory_kind", "seconds")


def collect_rows(folder: str | os.PathLike) -> list[dict]:
    """One row per cell that has at least one finished final run, in the sweep's cell order."""
    from ..errors import ConfigError
    from .record import SWEEP_FILE

    folder = Path(folder)
    if not (folder / SWEEP_FILE).is_file():
        raise ConfigError(f"{folder} is not a sweep folder (no {SWEEP_FILE}); give the --out of a sweep.")
    record = json.loads((folder / SWEEP_FILE).read_text(encoding="utf-8"))
    rows = []
    for cell in record["cells"]:
        runs = [r for seed in record["seeds"]
                if (r := read_trial(folder / "final" / cell["name"] / f"seed{seed}")) is not None]
        values = [r["metrics"][cell["metric"]] for r in runs if cell["metric"] in r["metrics"]]
        if not values:
            continue
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
        rows.append({"method": cell["method"], "dataset": cell["dataset"], "setting": cell.get("setting", ""),
                     "metric": cell["metric"],
                     "mean": round(mean, 6), "std": round(std, 6), "n": len(values),
                     "trainable_params": runs[0]["trainable_params"],
                     "peak_memory_mib": round(_mean([r["peak_memory_bytes"] for r in runs]) / 2**20, 1),
                     "peak_memory_kind": runs[0]["peak_memory_kind"],
                     "seconds": round(_mean([r["seconds"] for r in runs]), 2)})
    return rows


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def write_report(folder: str | os.PathLike) -> list[Path]:
    """Write ``table.csv``, ``table.md`` and ``pareto.png`` into ``folder``; returns their paths."""
    from .._io import atomic_write_text

    folder = Path(folder)
    rows = collect_rows(folder)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    paths = [atomic_write_text(folder / "table.csv", text.getvalue()),
             atomic_write_text(folder / "table.md", _markdown(rows)), folder / "pareto.png"]
    direction = json.loads((folder / "sweep.json").read_text(encoding="utf-8")).get("direction")
    _pareto(rows, paths[2], -1.0 if direction == "minimize" else 1.0)
    return paths


def _markdown(rows: list[dict]) -> str:
    lines = ["| method | dataset / task | setting | metric | mean +- std (n) | trainable params "
             "| peak memory (MiB) | seconds |", "| --- | --- | --- | --- | --- | ---: | ---: | ---: |"]
    for r in rows:
        kind = "CUDA" if r["peak_memory_kind"] == "cuda_max_allocated" else "RSS"
        lines.append(f"| {r['method']} | {r['dataset']} | {r['setting']} | {r['metric']} | "
                     f"{r['mean']:.4f} +- {r['std']:.4f} ({r['n']}) | {r['trainable_params']:,} | "
                     f"{r['peak_memory_mib']:.0f} {kind} | {r['seconds']:.1f} |")
    if not rows:
        lines.append("| (no final run finished) | | | | | | | |")
    return "\n".join(lines) + "\n"


def _panel(row: dict) -> str:
    return f"{row['dataset']} {row['setting']}".strip()


def _pareto(rows: list[dict], path: Path, sign: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(_panel(r) for r in rows)) or ["(none)"]
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.5 * len(datasets), 3.8), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        points = sorted((max(r["trainable_params"], 1), r["mean"], r["std"], r["method"])
                        for r in rows if _panel(r) == dataset)
        for x, y, err, method in points:
            ax.errorbar([x], [y], yerr=[err], fmt="o", capsize=3)
            ax.annotate(method, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        front, best = [], -math.inf
        for x, y, _, _ in points:  # ascending parameters: a point is on the front when it beats all smaller
            if sign * y > best:
                front.append((x, y))
                best = sign * y
        if front:
            ax.plot(*zip(*front, strict=True), "--", color="grey", linewidth=1)
        ax.set_xscale("log")
        ax.set_xlabel("trainable parameters")
        ax.set_ylabel(next((r["metric"] for r in rows if _panel(r) == dataset), "metric"))
        ax.set_title(dataset)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
