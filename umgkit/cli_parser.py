"""The ``umgkit`` argument parser: every command, its arguments and help (`umgkit.cli` runs them)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

__all__ = ["build_parser", "DEBUG_ENV"]

DEBUG_ENV = "UMGKIT_DEBUG"  # set to 1 for tracebacks of user errors (as --debug)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="umgkit",
        description="Adapt frozen multi-granularity vision-language backbones with "
                    "parameter-efficient tuning.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"umgkit {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help=f"show the full traceback of an error (also: {DEBUG_ENV}=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = sub.add_parser("train", help="train a task from a YAML config; ends with OUTPUT_DIR/model/",
                           description="train a task from a YAML config; the run ends with a model folder "
                                       "OUTPUT_DIR/model/ that eval, predict and Predictor.from_pretrained "
                                       "load")
    train.add_argument("config", type=Path, help="YAML config file")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                       help="dotted overrides, e.g. train.lr=1e-3 model.adapter_options.rank=16")
    train.add_argument("--resume", action="store_true",
                       help="continue from the newest intact checkpoint (= train.resume=auto)")
    train.add_argument("--overwrite", action="store_true",
                       help="start afresh in an output_dir that holds another run, deleting its checkpoints, "
                            "metrics and model (= train.overwrite=true)")

    ev = sub.add_parser("eval", help="evaluate a trained run / model / checkpoint folder, or a config",
                        description="evaluate a trained model on its config's val split, or on another "
                                    "dataset given by overrides (data.root=... data.val_split=...); the "
                                    "train split is never read. A config file is evaluated as built "
                                    "(zero-shot).")
    ev.add_argument("source", type=Path, metavar="RUN|MODEL|CHECKPOINT|CONFIG",
                    help="OUTPUT_DIR of a run, its model/ folder, a checkpoints/step_* folder, or a YAML "
                         "config")
    ev.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides of the stored config")

    pr = sub.add_parser("predict", help="run a trained model (or a zero-shot config) on images",
                        description="predict on image files, folders or globs; writes the task's standard "
                                    "files (predictions.jsonl, label PNGs, COCO panoptic PNG + JSON, COCO "
                                    "results JSON, retrieval rankings) and overlays with a legend into --out")
    pr.add_argument("model", metavar="MODEL", help="run / model / checkpoint folder, or a YAML config")
    pr.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    pr.add_argument("--out", type=Path, required=True, help="output folder")
    pr.add_argument("--classes", default=None, metavar="A,B,C",
                    help="comma-separated class names replacing the vocabulary (open-vocabulary heads)")
    pr.add_argument("--classes-file", type=Path, default=None, help="file with one class name per line")
    pr.add_argument("--texts", nargs="+", action="extend", default=None, metavar="TEXT",
                    help="retrieval: query texts ranked against the images (and the images against them)")
    pr.add_argument("--texts-file", type=Path, default=None, help="retrieval: file with one query per line")
    pr.add_argument("--batch-size", type=_positive_int, default=None,
                    help="images per forward pass (default: the config's eval batch size)")
    pr.add_argument("--top-k", type=_positive_int, default=5,
                    help="classification: labels kept per image (default 5)")
    pr.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    pr.add_argument("--skip-bad", action="store_true",
                    help="list unreadable images and predict the rest (default: stop at the first)")
    pr.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="dotted override of the model's config, e.g. --set task_options.inference=slide")

    ex = sub.add_parser("export", help="write a trained model as a model folder, optionally merged",
                        description="write the model of a run / model / checkpoint folder into --out as a "
                                    "model folder; with --merge the adapter is folded into the backbone, "
                                    "saved in its own library's format (open_clip, timm, umg, transformers)")
    ex.add_argument("model", metavar="MODEL", help="run / model / checkpoint folder")
    ex.add_argument("--out", type=Path, required=True, help="output folder")
    ex.add_argument("--merge", action="store_true",
                    help="merge the adapter (LoRA family, lora_qv, SSF, BitFit) into the backbone weights")
    ex.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="dotted override of the model's config before loading")

    push = sub.add_parser("push", help="upload a run's model folder to the Hugging Face Hub",
                          description="upload the model folder of a run (or a model folder, e.g. from "
                                      "`umgkit export --merge`) to the Hub; load it anywhere as "
                                      "hf-hub:ORG/NAME")
    push.add_argument("model", metavar="MODEL", help="run or model folder")
    push.add_argument("repo", metavar="ORG/NAME", help="Hub repository (created when missing)")
    push.add_argument("--private", action="store_true", help="create the repository as private")
    push.add_argument("--message", default=None, help="commit message")

    srv = sub.add_parser("serve", help="open-vocabulary inference in the browser (Gradio page)",
                         description="serve a run or model folder, an hf-hub: model, or a umg: / openclip: / "
                                     "hf: backbone (zero-shot) on a web page; needs the 'app' extra")
    srv.add_argument("model", metavar="MODEL", help="run or model folder, hf-hub:ORG/NAME, or a backbone")
    srv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine "
                     "only; 0.0.0.0 exposes it to the network)")
    srv.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    srv.add_argument("--image-size", type=int, default=None,
                     help="input side for a bare backbone (default: its native size)")
    srv.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    srv.add_argument("--examples-dir", type=Path, default=None,
                     help="where the example images are written (default: the user cache folder)")

    data = sub.add_parser("data", help="dataset tools").add_subparsers(dest="data_command", required=True)
    synth = data.add_parser("synth", help="write the synthetic world in every supported format")
    synth.add_argument("--out", type=Path, required=True, help="output folder")
    synth.add_argument("--num", type=int, default=2000, help="number of images (default 2000)")
    synth.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    synth.add_argument("--seed", type=int, default=0, help="random seed; same seed, same bytes")
    synth.add_argument("--val-fraction", type=float, default=0.2, help="share of images in val")
    shards = data.add_parser("shards", help="pack a JSONL pretraining manifest into webdataset tar shards",
                             description="write <split>-NNNNNN.tar shards and the <split>.shards.json index "
                                         "that data.format=webdataset reads")
    shards.add_argument("manifest", type=Path, metavar="MANIFEST", help="a .jsonl manifest (images relative "
                        "to it) or a folder holding <split>.jsonl")
    shards.add_argument("--out", type=Path, required=True, help="output folder")
    shards.add_argument("--split", default=None, help="split name (default: the manifest's file name)")
    shards.add_argument("--shard-size", type=_positive_int, default=1000,
                        help="samples per shard (default 1000)")
    shards.add_argument("--workers", type=_positive_int, default=os.cpu_count() or 1,
                        help="processes writing shards in parallel (default: all cores)")

    pre = sub.add_parser("pretrain", help="pretrain a dual encoder (image, region and pixel losses), "
                                          "then print zero-shot figures",
                         description="pretrain a umg: or open_clip dual encoder from a YAML config "
                                     "(task: pretrain)")
    pre.add_argument("config", type=Path, help="YAML config file")
    pre.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                     help="dotted overrides, e.g. train.max_steps=50 (put --ablation / --resume last)")
    pre.add_argument("--resume", action="store_true", help="continue from the newest intact checkpoint")
    pre.add_argument("--overwrite", action="store_true",
                     help="start afresh in an output_dir that holds another run (= train.overwrite=true)")
    pre.add_argument("--ablation", action="store_true",
                     help="run image-only and multi-granularity losses (same steps and seed), print a table")

    lst = sub.add_parser("list", help="print a registry's names")
    lst.add_argument("registry", choices=["backbones", "adapters", "heads", "models", "tasks", "datasets"])

    demo = sub.add_parser("demo", help="pretrain umg:tiny_conv on the synthetic world, adapt it to five "
                                       "tasks, write a report")
    demo.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder")
    demo.add_argument("--configs", type=Path, default=None, help="folder of the demo configs "
                      "(default: configs/demo of the source tree)")
    demo.add_argument("--only", nargs="+", default=None, metavar="TASK",
                      help="run only these task stages (pretraining always runs)")
    demo.add_argument("--quick", action="store_true",
                      help="two steps per stage on a small world: checks the pipeline, not the figures")

    d2 = sub.add_parser("d2-train", help="train / evaluate a detectron2 config with a umgkit backbone "
                                         "(needs detectron2)")
    d2.add_argument("config", type=Path, help="detectron2 YAML config, e.g. configs/detectron2/*.yaml")
    d2.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/checkpoints/step_*")
    d2.add_argument("--eval-only", action="store_true",
                    help="evaluate MODEL.WEIGHTS or the newest checkpoint")
    d2.add_argument("--num-gpus", type=int, default=1, help="processes on this machine (default 1)")
    d2.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE",
                    help="detectron2 config overrides, e.g. SOLVER.MAX_ITER 20 MODEL.DEVICE cpu")

    mm = sub.add_parser("mmseg-train", help="train an mmseg config with a umgkit backbone (needs mmseg; "
                                            "tools/mmseg_env.sh builds it)",
                        description="mmseg's Runner with trainable-only umgkit checkpoints, a trainable-only "
                                    "optimizer and the adapter exported at the end")
    mm.add_argument("config", type=Path, help="mmseg config, e.g. configs/mmseg/upernet_umg_synthetic.py")
    mm.add_argument("--work-dir", default=None, help="output folder (default: work_dirs/<config name>)")
    mm.add_argument("--resume", action="store_true", help="continue from WORK_DIR/checkpoints/step_*")
    mm.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
                    help="mmengine config overrides, e.g. train_cfg.max_iters=20")

    bench = sub.add_parser("bench", help="run benchmarks/ and write bench.json + bench.md",
                           description="run every benchmarks/*.py in its own process; write OUT/bench.json "
                                       "and a markdown summary OUT/bench.md (exit 1 if one failed)")
    bench.add_argument("--out", type=Path, default=Path("bench_out"), help="output folder")
    bench.add_argument("--quick", action="store_true", help="smallest settings: checks, not figures")
    bench.add_argument("--only", nargs="+", default=(), metavar="NAME", help="run only these benchmarks")
    bench.add_argument("--benchmarks", type=Path, default=None,
                       help="benchmark folder (default: benchmarks/ of the source tree)")
    bench.add_argument("--budget", type=float, default=660.0, help="seconds for the whole run (default 660)")
    bench.add_argument("--strict", action="store_true", help="also exit 1 when a figure misses its target")

    sw = sub.add_parser("sweep", help="hyper-parameter search over configs x methods (Optuna), best setting "
                                      "re-run per seed, table + Pareto plot",
                        description="search each config x axis cell of a sweep spec with Optuna, re-run each "
                                    "cell's best setting over the spec's seeds, write table.md, table.csv "
                                    "and pareto.png into the sweep folder (docs/sweeps.md); needs the "
                                    "'sweep' extra")
    sw.add_argument("spec", type=Path, nargs="?", metavar="SPEC", help="sweep spec YAML, e.g. "
                    "configs/sweeps/pet_vs_full.yaml")
    sw.add_argument("--out", type=Path, default=None, help="sweep folder (default: the spec's out)")
    sw.add_argument("--workers", type=_positive_int, default=1,
                    help="trials run at once, each in its own process (default 1)")
    sw.add_argument("--storage", default=None, metavar="URL",
                    help="Optuna storage shared by workers on several machines, e.g. "
                         "postgresql://user:pass@host/db (default: a journal file in the sweep folder)")
    sw.add_argument("--resume", action="store_true",
                    help="continue the sweep in the sweep folder; finished trials are not rerun")
    sw.add_argument("--check", action="store_true",
                    help="load every cell's config with its overrides and stop (no data, no training)")
    sw.add_argument("--report", type=Path, default=None, metavar="DIR",
                    help="rebuild table.md, table.csv and pareto.png of the sweep folder DIR and stop")

    docs = sub.add_parser("docs", help="generated documentation").add_subparsers(dest="docs_command",
                                                                                 required=True)
    ref = docs.add_parser("config-reference", help="write the config reference generated from the schemas")
    ref.add_argument("--out", type=Path, default=None, help="file to write (default: print)")
    ref.add_argument("--check", type=Path, default=None, help="exit 1 if this file is out of date")
    return parser
