"""``umgkit`` command line: train, eval, predict, export, push, serve, data, list, pretrain, demo, bench,
d2-train, mmseg-train, sweep."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .cli_parser import DEBUG_ENV, build_parser

__all__ = ["main", "build_parser", "DEBUG_ENV"]


def main(argv: list[str] | None = None) -> int:
    """Run one command; a user mistake (`umgkit.errors.UmgkitError`) prints one line and returns 2.

    Genuine bugs keep their traceback; ``--debug`` (or ``UMGKIT_DEBUG=1``) shows it for user mistakes too.
    """

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
    from ._io import check_output_folder
    from .errors import ModelError
    from .models import Predictor

    check_output_folder(args.out, "--out")  # before the model loads
    import_builtins()
    classes = None
    if args.classes_file is not None:
        classes = _read_names(args.classes_file, "--classes-file", "one class name per line")
    if args.classes is not None:
        classes = [c.strip() for c in args.classes.split(",") if c.strip()]
        if not classes:
            raise ModelError(f"--classes {args.classes!r} names no class; give comma-separated names.")
    texts = list(args.texts or [])
    if args.texts_file is not None:
        texts += _read_names(args.texts_file, "--texts-file", "one text per line")
    predictor = Predictor.from_pretrained(args.model, overrides=args.overrides, class_names=classes,
                                          device=args.device, batch_size=args.batch_size, top_k=args.top_k)
    sources, files = predictor.predict_to(args.inputs, args.out, texts=texts or None, skip_bad=args.skip_bad,
                                        progress=True)
    for source, reason in predictor.skipped:
        print(f"skipped {source}: {reason}", file=sys.stderr)
    print(f"{predictor.task}: {len(sources)} images predicted, {len(predictor.skipped)} skipped; "
          f"{len(files)} files written to {args.out}")
    return 0


def _read_names(path: Path, flag: str, layout: str) -> list[str]:
    """The non-empty lines of a ``--classes-file`` / ``--texts-file``, or an error naming the file."""
    from .data.images import read_lines
    from .errors import ModelError

    if path.is_dir():
        raise ModelError(f"{flag} {path} is a folder; give a text file with {layout}.")
    if not path.is_file():
        raise ModelError(f"{flag} {path} does not exist; give a text file with {layout}.")
    lines = read_lines(path)
    if not lines:
        raise ModelError(f"{flag} {path} is empty; write {layout} in it.")
    return lines


def _cmd_export(args: argparse.Namespace) -> int:
    from ._builtins import import_builtins
    from .models import export_model

    import_builtins()
    if args.merge:
        from .engine.strategy import refuse_merge_under_zero3

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


def _cmd_sweep(args: argparse.Namespace) -> int:
    from .errors import ConfigError

    if args.report is not None:
        from .sweep import write_report

        for path in write_report(args.report):
            print(f"wrote {path}")
        return 0
    if args.spec is None:
        raise ConfigError("give a sweep spec (umgkit sweep SPEC.yaml) or --report DIR.")
    from .sweep import check_spec, load_spec, run_sweep

    if args.check:
        spec = load_spec(args.spec)
        metrics = check_spec(spec)
        for cell in spec.cells():
            print(f"{cell.name}: {spec.budget(cell)} trials, metric {metrics[cell.name]}")
        print(f"{args.spec}: {len(metrics)} cells load; {len(spec.seeds)} seeds each")
        return 0
    folder = run_sweep(args.spec, out=args.out, workers=args.workers, storage=args.storage,
                       resume=args.resume)
    print((folder / "table.md").read_text(encoding="utf-8"))
    print(f"wrote {folder / 'table.md'}, {folder / 'table.csv'} and {folder / 'pareto.png'}")
    return 0


_COMMANDS["sweep"] = _cmd_sweep
_COMMANDS["bench"] = _cmd_bench
_COMMANDS["docs"] = _cmd_docs


if __name__ == "__main__":
    sys.exit(main())
