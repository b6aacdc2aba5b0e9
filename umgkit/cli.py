"""``umgkit`` command line: train, eval, predict, export, push, serve, data, list, pretrain, demo, bench,
d2-train, mmseg-train."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

__all__ = ["main", "build_parser", "DEBUG_ENV"]

DEBUG_ENV = "UMGKIT_DEBUG"


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
    shards.add_argument("--shard-size", type=int, default=1000, help="samples per shard (default 1000)")
    shards.add_argument("--workers", type=int, default=os.cpu_count() or 1,
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
    bench.add_argument("--budget", type=float, default=570.0, help="seconds for the whole run (default 570)")
    bench.add_argument("--strict", action="store_true", help="also exit 1 when a figure misses its target")

    docs = sub.add_parser("docs", help="generated documentation").add_subparsers(dest="docs_command",
                                                                                 required=True)
    ref = docs.add_parser("config-reference", help="write the config reference generated from the schemas")
    ref.add_argument("--out", type=Path, default=None, help="file to write (default: print)")
    ref.add_argument("--check", type=Path, default=None, help="exit 1 if this file is out of date")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; a user mistake (`umgkit.errors.UmgkitError`) prints one line and returns 2.

    Genuine bugs keep their traceback; ``--debug`` (or ``UMGKIT_DEBUG=1``) shows it for user mistakes too.
    """
    import os

    args = build_parser().parse_args(argv)
    from .errors import UmgkitError

    debug = args.debug or os.environ.get(DEBUG_ENV, "").strip().lower() in {"1", "true", "yes", "on"}
    try:
        return _COMMANDS[args.command](args)
    except UmgkitError as err:
        if debug:
            raise
        message = " ".join(str(err).split())  # one line, whatever the message's own line breaks
        print(f"umgkit {args.command}: error: {message}", file=sys.stderr)
        return 2


def _cmd_list(args: argparse.Namespace) -> int:
    from ._builtins import import_builtins
    from .registry import REGISTRIES

    import_builtins()
    registry = REGISTRIES[args.registry]
    rows = registry.describe()
    if not rows:
        print(f"(no {args.registry} registered)")
    width = max((len(n) for n, _ in rows), default=0)
    for name, doc in rows:
        print(f"{name:<{width}}  {doc}".rstrip())
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    if args.data_command == "shards":
        from .data.shards import read_index, write_shards

        index = write_shards(args.manifest, args.out, samples_per_shard=args.shard_size, split=args.split,
                             workers=args.workers, progress=True)
        urls, counts = read_index(index)
        print(f"wrote {sum(counts)} samples in {len(urls)} shards to {args.out}; train on them with "
              f"data.format=webdataset data.root={args.out}")
        return 0
    from .data.synth import generate_world

    summary = generate_world(args.out, num=args.num, size=args.size, seed=args.seed,
                             val_fraction=args.val_fraction)
    counts = ", ".join(f"{split}: {n}" for split, n in summary["counts"].items())
    print(f"wrote the synthetic world to {args.out} ({counts})")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from ._builtins import import_builtins
    from .config import load_config

    cfg = load_config(args.config, _run_overrides(args))  # before the heavy imports: config errors are quick
    from .tasks.run import train_and_save

    import_builtins()
    _, metrics = train_and_save(cfg)
    if _is_main_process():
        _print_metrics(metrics)
        print(f"model folder: {Path(cfg.output_dir) / 'model'} (umgkit eval / umgkit predict load it)")
    return 0


def _run_overrides(args: argparse.Namespace) -> list[str]:
    """The dotted overrides with --resume / --overwrite folded in (they are config keys too)."""
    if args.resume and args.overwrite:
        from .errors import ConfigError

        raise ConfigError("--resume continues the run in output_dir, --overwrite deletes it; give one.")
    return (list(args.overrides) + (["train.resume=auto"] if args.resume else [])
            + (["train.overwrite=true"] if args.overwrite else []))


def _cmd_eval(args: argparse.Namespace) -> int:
    from ._builtins import import_builtins
    from .models import resolve_model_source
    from .tasks.run import evaluate_saved

    import_builtins()
    source = resolve_model_source(args.source)
    if source.kind == "config":
        _note_trained_run(args.source, args.overrides)
    cfg, metrics = evaluate_saved(source, args.overrides)
    if _is_main_process():
        print(f"evaluated the {source.kind} {args.source} on split {cfg.data.val_split!r} of {cfg.data.root}",
              file=sys.stderr)
        if not metrics:
            print(f"no val split to evaluate (data.val_split={cfg.data.val_split!r}); set one with "
                  "data.val_split=... (and data.root=...).", file=sys.stderr)
        _print_metrics(metrics)
    return 0


def _note_trained_run(config: Path, overrides: list[str]) -> None:
    """Tell a user who evaluates a config whose run has finished that the trained model is elsewhere."""
    from .config import load_config

    cfg = load_config(config, overrides)
    folder = Path(cfg.output_dir) / "model"
    if (folder / "model.json").is_file():
        print(f"note: evaluating {config} as built, untrained; its trained model is {folder} "
              f"(umgkit eval {cfg.output_dir})", file=sys.stderr)


def _cmd_predict(args: argparse.Namespace) -> int:
    from ._builtins import import_builtins
    from .data._images import read_lines
    from .errors import ModelError
    from .models import Predictor

    import_builtins()
    classes = None
    if args.classes_file is not None:
        if not args.classes_file.is_file():
            raise ModelError(f"--classes-file {args.classes_file} does not exist; give a text file with one "
                             "class name per line.")
        classes = read_lines(args.classes_file)
    if args.classes is not None:
        classes = [c.strip() for c in args.classes.split(",") if c.strip()]
        if not classes:
            raise ModelError(f"--classes {args.classes!r} names no class; give comma-separated names.")
    texts = list(args.texts or [])
    if args.texts_file is not None:
        if not args.texts_file.is_file():
            raise ModelError(f"--texts-file {args.texts_file} does not exist; give a file with one text per "
                             "line.")
        texts += read_lines(args.texts_file)
    predictor = Predictor.from_pretrained(args.model, overrides=args.overrides, class_names=classes,
                                          device=args.device, batch_size=args.batch_size, top_k=args.top_k)
    sources, files = predictor.predict_to(args.inputs, args.out, texts=texts or None, skip_bad=args.skip_bad,
                                        progress=True)
    for source, reason in predictor.skipped:
        print(f"skipped {source}: {reason}", file=sys.stderr)
    print(f"{predictor.task}: {len(sources)} images predicted, {len(predictor.skipped)} skipped; "
          f"{len(files)} files written to {args.out}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from ._builtins import import_builtins
    from .models import export_model

    import_builtins()
    if args.merge:
        from .engine._strategy import refuse_merge_under_zero3

        refuse_merge_under_zero3()
    out = export_model(args.model, args.out, merge=args.merge, overrides=args.overrides)
    info = json.loads((out / "model.json").read_text(encoding="utf-8"))
    what = "merged into the backbone" if args.merge else f"adapter {info['adapter']['method']} kept"
    print(f"exported {args.model} to {out} ({what}; backbone {info['backbone']['name']}, weights "
          f"{info['backbone']['file'] or 'rebuilt from the config'})")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from ._builtins import import_builtins
    from .app import serve

    import_builtins()
    serve(args.model, host=args.host, port=args.port, image_size=args.image_size, device=args.device,
          examples_dir=args.examples_dir)
    return 0


def _cmd_push(args: argparse.Namespace) -> int:
    from .models.hub import push_model

    url = push_model(args.model, args.repo, private=args.private, commit_message=args.message)
    print(f"pushed {args.model} to {args.repo}: {url} (load it as hf-hub:{args.repo})")
    return 0


def _is_main_process() -> bool:
    import os

    return int(os.environ.get("RANK", "0")) == 0


def _print_metrics(metrics: dict) -> None:
    for key, value in metrics.items():
        print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.out, configs=args.configs, quick=args.quick,
             stages=tuple(args.only) if args.only else None)
    return 0


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from ._builtins import import_builtins
    from .config import load_config
    from .pretrain import run_ablation, run_pretrain

    cfg = load_config(args.config, _run_overrides(args))
    import_builtins()
    run_ablation(cfg) if args.ablation else run_pretrain(cfg)
    return 0


_COMMANDS = {"train": _cmd_train, "eval": _cmd_eval, "predict": _cmd_predict, "export": _cmd_export,
             "push": _cmd_push, "serve": _cmd_serve, "data": _cmd_data, "list": _cmd_list, "demo": _cmd_demo}
_COMMANDS["pretrain"] = _cmd_pretrain


def _cmd_d2_train(args: argparse.Namespace) -> int:
    from .integrations import D2_INSTALL_HINT, is_detectron2_available

    if not is_detectron2_available():  # detectron2 is imported only here, when the command runs
        print(f"umgkit d2-train: {D2_INSTALL_HINT}", file=sys.stderr)
        return 2
    from .integrations.d2.train import launch_from_args

    launch_from_args(str(args.config), list(args.opts), resume=args.resume, eval_only=args.eval_only,
                     num_gpus=args.num_gpus)
    return 0


_COMMANDS["d2-train"] = _cmd_d2_train


def _cmd_mmseg_train(args: argparse.Namespace) -> int:
    from .errors import ConfigError
    from .integrations import MMSEG_INSTALL_HINT, is_mmseg_models_available

    ok, why = is_mmseg_models_available()
    if not ok:  # mmseg is imported only here, when the command runs
        print(f"umgkit mmseg-train: {why or MMSEG_INSTALL_HINT}", file=sys.stderr)
        return 2
    if not args.config.is_file():
        raise ConfigError(f"mmseg config {args.config} does not exist; the shipped ones are in "
                          "configs/mmseg/.")
    from mmengine.config import DictAction

    options = {}
    for item in args.cfg_options:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--cfg-options {item!r}: give KEY=VALUE, e.g. train_cfg.max_iters=20.")
        options[key] = DictAction._parse_iterable(value)
    from .integrations.mmseg.train import train

    adapter = train(args.config, work_dir=args.work_dir, resume=args.resume, cfg_options=options)
    print(f"mmseg-train: done; the adapter is in {adapter} (umgkit.adapters.load_adapter reads it)")
    return 0


_COMMANDS["mmseg-train"] = _cmd_mmseg_train


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench import exit_status, run_bench

    source_tree = Path(__file__).resolve().parent.parent / "benchmarks"  # editable install / checkout
    folder = args.benchmarks or (source_tree if source_tree.is_dir() else Path("benchmarks"))
    try:
        report = run_bench(args.out, benchmarks=folder, quick=args.quick, only=args.only,
                           budget_s=args.budget)
    except (FileNotFoundError, ValueError) as err:  # no benchmark folder, unknown --only name
        print(f"umgkit bench: {err}", file=sys.stderr)
        return 2
    print((args.out / "bench.md").read_text(encoding="utf-8"))
    print(f"wrote {args.out / 'bench.json'} and {args.out / 'bench.md'}")
    return exit_status(report, strict=args.strict)


def _cmd_docs(args: argparse.Namespace) -> int:
    from .config.reference import main as reference_main

    argv = ["--out", str(args.out)] if args.out else (["--check", str(args.check)] if args.check else [])
    return reference_main(argv)


_COMMANDS["bench"] = _cmd_bench
_COMMANDS["docs"] = _cmd_docs


if __name__ == "__main__":
    sys.exit(main())
