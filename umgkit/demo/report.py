"""``report.md``: one table of the demo's held-out figures and costs, with the pictures the runs drew."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .chance import classification_chance, retrieval_chance, segmentation_chance
from .plots import plot_curves
from .stages import StageResult
from .world import preview_world, reader_counts

__all__ = ["write_report", "chance_level", "results_table", "pretrain_table"]


def chance_level(result: StageResult) -> float | None:
    """The stage metric a prediction that ignores the image would get (None where it is ~0 anyway)."""
    task, name = result.task, result.stage.name
    val = getattr(task, "val_dataset", None)
    if val is None:
        return None
    if name == "classification":
        return classification_chance(len(val.class_names))
    if name == "retrieval":
        captions = task.eval_captions or len(val[0]["captions"])  # None = every caption of the image
        return retrieval_chance(len(val), int(captions))
    if name == "semantic":
        maps = [np.asarray(val[i]["label_map"]) for i in range(len(val))]
        return 100.0 * segmentation_chance(maps, len(task.val_names))
    return None  # PQ and AP of random masks / boxes are ~0


def results_table(results: list[StageResult]) -> list[str]:
    rows = ["| task | held-out metric | value | chance | trainable params | % of backbone | train time |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        chance = chance_level(r)
        share = 100.0 * r.trainable / r.backbone if r.backbone else float("nan")
        rows.append(f"| {r.stage.name} | {r.stage.label} | {r.value:.2f} | "
                    f"{'~0' if chance is None else f'{chance:.2f}'} | {r.trainable:,} | {share:.2f} | "
                    f"{r.seconds:.0f} s |")
    return rows


_ZEROSHOT_ROWS = (("image classification", "classification", "top1"),
                  ("region classification", "regions", "top1"),
                  ("segmentation", "segmentation", "mIoU"))


def pretrain_table(metrics: dict[str, float]) -> list[str]:
    """Zero-shot figures of the pretrained backbone next to their chance levels (percent)."""
    rows = ["| zero-shot | metric | value | chance |", "| --- | --- | ---: | ---: |"]
    for title, kind, name in _ZEROSHOT_ROWS:
        if f"{kind}/{name}" in metrics:
            rows.append(f"| {title} | {name} (%) | {100 * metrics[f'{kind}/{name}']:.2f} | "
                        f"{100 * metrics[f'{kind}/chance']:.2f} |")
    return rows


def write_report(out: Path, pretrain: StageResult, results: list[StageResult], seconds: float,
                 example: tuple[Path, int, int] | None = None) -> Path:
    """Write ``out/report.md`` (+ ``curves.png``) from the stage results of this run."""
    runs = {"pretrain": pretrain.output_dir, **{r.stage.name: r.output_dir for r in results}}
    curves = plot_curves(runs, out / "curves.png")
    lines = ["# umgkit demo", "",
             "Synthetic world: umg:tiny_conv pretrained with multi-granularity losses, then LoRA + a task "
             f"head per task. Every figure below was measured by this run ({seconds / 60:.1f} min in all).",
             "", "## Held-out results", "", *results_table(results), "",
             "## Pretraining (zero-shot, before any task training)", "",
             *pretrain_table(pretrain.metrics)]
    lines += ["", f"Pretraining took {pretrain.seconds:.0f} s; backbone: "
              f"`umg:{(pretrain.output_dir / 'backbone').as_posix()}`.", "", "## Pictures", "",
              f"Training loss of every stage: ![curves]({_rel(curves, out)})", ""]
    world = next((r.world for r in results if r.world is not None), None)
    if world is not None:
        preview = preview_world(world, out / "world_preview.png")
        counts = ", ".join(f"{name} {n}" for name, n in reader_counts(world))
        lines += ["### the task world", "", f"Held-out images read back per format: {counts}.", "",
                  f"![world preview]({_rel(preview, out)})", ""]
    if example is not None:
        png, right, boxes = example
        lines += ["### zero-shot regions", "",
                  f"Ground-truth boxes of held-out task images named by the pretrained backbone alone "
                  f"(`embed_regions` vs class-name prompts): {right}/{boxes} right; a wrong box reads "
                  "predicted/true.", "", f"![zero-shot regions]({_rel(png, out)})", ""]
    for r in [pretrain, *results]:
        pictures = r.pictures or sorted((r.output_dir / "vis").glob("*.png"))[:3]
        if pictures:
            how = (f"`umgkit predict {r.output_dir.as_posix()} ...` on held-out images:" if r.pictures
                   else "Pictures from the task's evaluation:")
            lines += [f"### {r.stage.name}", "", how, "",
                      *[f"![{p.stem}]({_rel(p, out)})" for p in pictures], ""]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _rel(path: Path, start: Path) -> str:
    try:
        return path.resolve().relative_to(start.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()
