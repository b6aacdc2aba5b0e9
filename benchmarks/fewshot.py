"""The few-shot table on the synthetic world: every CLIP few-shot method at K shots x seeds, zero-shot,
and base-to-novel, from the shipped configs (configs/fewshot/synthetic/).

Each run is an ordinary `umgkit train` of a method's config with ``seed``, ``data.fewshot.shots`` and
``data.fewshot.classes`` overridden (the sampler draws the same K images per class for every method at a
seed); zero-shot is `umgkit eval` of zeroshot.yaml. Base-to-novel trains on the first half of the classes
(K = the largest shot count) and evaluates the saved model on the base and on the novel classes; H is
their harmonic mean. Prints one JSON object (per method and K: mean, std and every run's top-1; seconds
per run) and, with ``--update-docs FILE``, rewrites the table between the markers in that file.

Run from the repository root after pretraining the demo backbone (``make demo`` or ``umgkit pretrain
configs/demo/pretrain_tiny.yaml``):
    python benchmarks/fewshot.py --update-docs docs/fewshot.md       # the docs table (~15 min, 2 CPUs)
    python benchmarks/fewshot.py --shots 4 --seeds 1 --steps 20 --no-base-to-novel   # cost per run only
Without the demo backbone (``--backbone`` not found) it falls back to a random ``umg:tiny_conv``, which
measures cost only: its accuracies mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = Path("configs/fewshot/synthetic")
METHODS = ("coop", "cocoop", "clip_adapter", "tip_adapter", "tip_adapter_f", "clip_lora", "lp_pp")
# Base-to-novel needs a model that names classes it never saw: Tip-Adapter's cache and LP++'s class rows
# belong to the training classes (evaluating them on novel ones is an error, as in the papers' tables).
OPEN_VOCABULARY = ("zeroshot", "coop", "cocoop", "clip_adapter", "clip_lora")
DEMO_BACKBONE = "demo_out/pretrain/backbone"
START, END = "<!-- fewshot-table:start -->", "<!-- fewshot-table:end -->"


def _top1(metrics: dict) -> float:
    return round(100.0 * float(metrics["top1"]), 2)


def _run(method: str, overrides: list[str], out: Path) -> tuple[float, float, int]:
    """Top-1 (%), seconds and trainable parameters of one run of ``method``'s config."""
    from umgkit.config import load_config
    from umgkit.demo.stages import count_parameters
    from umgkit.tasks.run import evaluate_saved, train_and_save

    start = time.perf_counter()
    if method == "zeroshot":
        _, metrics = evaluate_saved(CONFIGS / "zeroshot.yaml", overrides)
        trainable = 0
    else:
        extra = [f"output_dir={out}", "train.overwrite=true", "train.progress=false"]
        cfg = load_config(CONFIGS / f"{method}.yaml", [*overrides, *extra])
        images = _train_images(cfg)
        if images < cfg.data.batch_size:  # K = 1 on 8 classes: one batch is every shot
            cfg = load_config(CONFIGS / f"{method}.yaml", [*overrides, *extra, f"data.batch_size={images}"])
        task, metrics = train_and_save(cfg)
        trainable = count_parameters(task.model)[0]
    return _top1(metrics), time.perf_counter() - start, trainable


def _train_images(cfg) -> int:
    """The few-shot train set's size, K x the classes kept (the zero-shot run has written the world)."""
    from umgkit.data.fewshot import split_classes

    classes = sum(1 for p in (Path(cfg.data.root) / cfg.data.train_split).iterdir() if p.is_dir())
    return cfg.data.fewshot.shots * len(split_classes(classes, cfg.data.fewshot.classes))


def _novel(run: Path, overrides: list[str]) -> float:
    from umgkit.tasks.run import evaluate_saved

    return _top1(evaluate_saved(run, [*overrides, "data.fewshot.classes=novel"])[1])


def _summary(values: list[float]) -> dict:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": round(statistics.fmean(values), 2), "std": round(std, 2), "runs": values}


def measure(args: argparse.Namespace) -> dict:
    common = [f"model.backbone={args.backbone}"] + ([f"train.max_steps={args.steps}"] if args.steps else [])
    table: dict[str, dict[str, dict]] = {}
    seconds: dict[str, list[float]] = {}
    params: dict[str, int] = {}
    runs = Path(args.out)
    for method in ("zeroshot", *args.methods):
        for shots in args.shots:
            values = []
            for seed in args.seeds:
                over = [*common, f"seed={seed}", f"data.fewshot.shots={shots}"]
                top1, secs, trainable = _run(method, over, runs / method / f"k{shots}_s{seed}")
                values.append(top1)
                params[method] = trainable  # at the largest K last (Tip-Adapter-F's cache grows with K)
                seconds.setdefault(method, []).append(secs)
                print(f"{method} K={shots} seed={seed}: top-1 {top1:.2f} ({secs:.1f} s)", flush=True)
            table.setdefault(method, {})[str(shots)] = _summary(values)
    b2n: dict[str, dict] = {}
    if args.base_to_novel:
        shots = max(args.shots)
        for method in (m for m in ("zeroshot", *args.methods) if m in OPEN_VOCABULARY):
            base, novel = [], []
            for seed in args.seeds:
                over = [*common, f"seed={seed}", f"data.fewshot.shots={shots}"]
                run = runs / method / f"b2n_k{shots}_s{seed}"
                top1 = _run(method, [*over, "data.fewshot.classes=base"], run)[0]
                base.append(top1)
                if method == "zeroshot":
                    novel.append(_run(method, [*over, "data.fewshot.classes=novel"], run)[0])
                else:
                    novel.append(_novel(run, over))
                print(f"{method} base-to-novel seed={seed}: base {base[-1]:.2f} novel {novel[-1]:.2f}",
                      flush=True)
            b, n = statistics.fmean(base), statistics.fmean(novel)
            b2n[method] = {"base": _summary(base), "novel": _summary(novel),
                           "hm": round(2 * b * n / (b + n), 2) if b + n else 0.0}
    return {"table": table, "base_to_novel": b2n, "trainable_params": params,
            "seconds_per_run": {m: round(statistics.fmean(s), 2) for m, s in seconds.items()}}


def markdown(result: dict, args: argparse.Namespace) -> str:
    shots = [str(k) for k in args.shots]
    lines = [f"Top-1 (%) on the 200 val images, mean ± std over seeds {', '.join(map(str, args.seeds))}; "
             f"backbone `{args.backbone}`.", "",
             "| method | " + " | ".join(f"K={k}" for k in shots)
             + f" | trainable params (K={max(args.shots)}) | s / run |",
             "| --- | " + " | ".join("---:" for _ in shots) + " | ---: | ---: |"]
    for method, row in result["table"].items():
        cells = [f"{row[k]['mean']:.2f} ± {row[k]['std']:.2f}" for k in shots]
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {result['trainable_params'][method]:,} | "
                     f"{result['seconds_per_run'][method]:.1f} |")
    if result["base_to_novel"]:
        lines += ["", f"Base-to-novel (K={max(args.shots)} on the base classes; base = the first 4 classes "
                      "in label order, novel = the other 4; the methods that name new classes):", "",
                  "| method | base | novel | H |", "| --- | ---: | ---: | ---: |"]
        for method, r in result["base_to_novel"].items():
            lines.append(f"| {method} | {r['base']['mean']:.2f} ± {r['base']['std']:.2f} | "
                         f"{r['novel']['mean']:.2f} ± {r['novel']['std']:.2f} | {r['hm']:.2f} |")
    return "\n".join(lines)


def _update_docs(path: Path, table: str) -> None:
    text = path.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{path} has no {START} ... {END} markers to put the table between.")
    head, rest = text.split(START, 1)
    path.write_text(f"{head}{START}\n{table}\n{END}{rest.split(END, 1)[1]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default=f"umg:{DEMO_BACKBONE}")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--shots", nargs="+", type=int, default=[1, 4, 16])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--steps", type=int, default=0, help="train.max_steps override (0 = the configs')")
    parser.add_argument("--no-base-to-novel", dest="base_to_novel", action="store_false")
    parser.add_argument("--out", default="demo_out/fewshot_table", help="run folders")
    parser.add_argument("--update-docs", type=Path, help="rewrite the table between the markers of this file")
    args = parser.parse_args()
    args.shots = sorted(set(args.shots))  # the largest K last: the table's parameter counts are at that K
    os.chdir(ROOT)  # the configs name demo_out/... relative to the repository
    pretrained = args.backbone != f"umg:{DEMO_BACKBONE}" or Path(DEMO_BACKBONE).is_dir()
    if not pretrained:
        args.backbone = "umg:tiny_conv"
    from umgkit._builtins import import_builtins

    import_builtins()
    result = measure(args)
    table = markdown(result, args)
    if args.update_docs:
        _update_docs(args.update_docs, table)
    largest = str(max(args.shots))
    zero = result["table"]["zeroshot"][largest]["mean"]
    figures = []
    for method in args.methods:
        gain = result["table"][method][largest]["mean"] - zero
        figures.append({"figure": f"{method}: top-1 gain over zero-shot at K={largest} (points)",
                        "ratio": round(gain, 2), "target": ">= 3" if pretrained and largest == "16" else None,
                        "detail": f"{result['seconds_per_run'][method]:.1f} s per run"
                                  + ("" if pretrained else "; random backbone: cost only")})
    print(json.dumps({"benchmark": "fewshot", "backbone": args.backbone, "pretrained": pretrained,
                      "shots": args.shots, "seeds": args.seeds, **result, "markdown": table,
                      "figures": figures}, indent=1))


if __name__ == "__main__":
    main()
