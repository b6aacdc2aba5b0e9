"""Training curves of every demo stage from the runs' own ``metrics.jsonl``."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["read_curve", "plot_curves"]


def read_curve(run_dir: Path, key: str = "train/loss") -> tuple[list[int], list[float]]:
    """``(steps, values)`` of one logged scalar, in the order the run logged them."""
    steps, values = [], []
    path = Path(run_dir) / "metrics.jsonl"
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if key in row:
            steps.append(int(row["step"]))
            values.append(float(row[key]))
    return steps, values


def plot_curves(runs: dict[str, Path], path: Path, key: str = "train/loss") -> Path:
    """One panel per run (training loss vs optimizer step), saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(3, len(runs))
    rows = -(-len(runs) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3 * rows), squeeze=False)
    for ax, (name, run_dir) in zip(axes.flat, runs.items(), strict=False):
        steps, values = read_curve(run_dir, key)
        ax.plot(steps, values, marker=".", linewidth=1)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.set_ylabel(key.split("/")[-1])
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(runs):]:
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
