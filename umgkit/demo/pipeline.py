"""The demo's order of work: world -> pretrain umg:tiny_conv -> LoRA on five tasks -> one report.

Every stage is a shipped config under ``configs/demo/`` run through the same public API as
``umgkit train`` / ``umgkit pretrain``; the demo only rebases their ``demo_out/`` paths onto ``out``,
points the tasks at the freshly pretrained backbone, and collects the figures the runs return.
"""

from __future__ import annotations

import time
from pathlib import Path

from .._io import check_output_folder
from ..config import load_config, load_yaml_tree
from ..errors import unknown_name
from .predictions import predict_examples
from .report import write_report
from .stages import Stage, StageResult, run_pretrain_stage, run_stage
from .zeroshot_example import zeroshot_region_example

__all__ = ["TASK_STAGES", "PRETRAIN_STAGE", "run_demo", "default_config_dir"]

PRETRAIN_STAGE = Stage("pretrain", "pretrain_tiny.yaml", "regions/top1", "zero-shot region top-1 (%)",
                       percent=True)
TASK_STAGES = (
    Stage("classification", "classification.yaml", "top1", "top-1 (%)", percent=True),
    Stage("retrieval", "retrieval.yaml", "mean_recall", "mean R@1/5/10 (%)"),
    Stage("semantic", "semantic.yaml", "mIoU", "mIoU (%)", percent=True),
    Stage("panoptic", "panoptic.yaml", "PQ", "PQ (%)", percent=True),
    Stage("detection", "detection.yaml", "box_AP50", "box AP50 (%)", percent=True),
)
_REBASED_KEYS = ("output_dir", "data.root", "data.synthetic.out")
_DEFAULT_PREFIX = "demo_out"
# quick mode: every stage takes a few steps on a small world, to test the pipeline itself
_QUICK = ("train.max_steps=2", "train.eval_every=0", "data.synthetic.num=48", "data.limit=16",
          "data.batch_size=8", "data.eval_batch_size=8")


def default_config_dir() -> Path:
    """``configs/demo`` of the source tree umgkit runs from (the demo's configs are not package data)."""
    path = Path(__file__).resolve().parents[2] / "configs" / "demo"
    if not path.is_dir():
        raise FileNotFoundError(f"the demo configs are not at {path}: run the demo from a clone of the "
                                "umgkit repository, or pass configs=<folder with the demo YAML files>.")
    return path


def run_demo(out: str | Path = "demo_out", *, configs: str | Path | None = None, quick: bool = False,
             stages: tuple[str, ...] | None = None) -> Path:
    """Run the whole demo into ``out`` and return the path of ``out/report.md``.

    ``stages`` limits the task stages run (pretraining always runs: the tasks adapt its backbone);
    ``quick`` trains every stage for two steps on a small world (a test of the pipeline, not of the
    figures).
    """
    names = [s.name for s in TASK_STAGES]
    for name in stages or ():
        if name not in names:  # before anything runs: an unknown stage was silently left out
            raise unknown_name("demo stage (--only)", name, names, f"The stages are {', '.join(names)}.")
    out = check_output_folder(out, "--out")
    out.mkdir(parents=True, exist_ok=True)
    configs = Path(configs) if configs else default_config_dir()
    extra = list(_QUICK) if quick else []
    chosen = [s for s in TASK_STAGES if stages is None or s.name in stages]
    start = time.perf_counter()

    total = 1 + len(chosen)
    _say(f"stage 1/{total}: pretraining umg:tiny_conv ({configs / PRETRAIN_STAGE.config})")
    pretrain = run_pretrain_stage(PRETRAIN_STAGE, configs / PRETRAIN_STAGE.config,
                         _rebase(configs / PRETRAIN_STAGE.config, out) + extra)
    backbone_dir = pretrain.output_dir / "backbone"
    _say(f"pretrained backbone -> {backbone_dir} ({pretrain.seconds:.0f} s)")

    results: list[StageResult] = []
    for i, stage in enumerate(chosen, start=2):
        _say(f"stage {i}/{total}: {stage.name} with LoRA on the pretrained backbone")
        overrides = _rebase(configs / stage.config, out) + [f"model.backbone=umg:{backbone_dir}"] + extra
        result = run_stage(stage, configs / stage.config, overrides)
        _say(f"{stage.name}: {stage.label} = {result.value:.2f} ({result.seconds:.0f} s)")
        result.pictures = predict_examples(result)
        results.append(result)

    example = None
    world = next((r.world for r in results if r.world is not None), None)
    if world is not None:
        from ..pretrain.task import parse_pretrain_options

        templates = parse_pretrain_options(load_config(configs / PRETRAIN_STAGE.config))["zeroshot_templates"]
        example = zeroshot_region_example(backbone_dir, world, out / "zeroshot_regions.png",
                                          templates["regions"])
        _say(f"zero-shot region example: {example[1]}/{example[2]} boxes named right -> {example[0]}")
    report = write_report(out, pretrain, results, seconds=time.perf_counter() - start, example=example)
    print(report.read_text().split("\n## ", 2)[1].split("\n", 1)[1])  # the results table
    _say(f"report -> {report}")
    return report


def _rebase(config: Path, out: Path) -> list[str]:
    """Overrides moving the config's ``demo_out/...`` paths under ``out`` (nothing when out is demo_out)."""
    tree, _ = load_yaml_tree(config)
    overrides = []
    for key in _REBASED_KEYS:
        value = tree
        for part in key.split("."):
            value = value.get(part, {}) if isinstance(value, dict) else {}
        if isinstance(value, str) and (value == _DEFAULT_PREFIX or value.startswith(_DEFAULT_PREFIX + "/")):
            overrides.append(f"{key}={out / value[len(_DEFAULT_PREFIX):].lstrip('/')}")
    return overrides


def _say(message: str) -> None:
    print(f"[demo] {message}", flush=True)
