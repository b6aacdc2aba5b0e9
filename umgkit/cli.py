"""``umgkit`` command line: train, eval, data synth, list, demo."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="umgkit",
        description="Adapt frozen multi-granularity vision-language backbones with "
                    "parameter-efficient tuning.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    for name, helptext in (("train", "train a task from a YAML config"),
                           ("eval", "evaluate a task from a YAML config (no training)")):
        cmd = sub.add_parser(name, help=helptext, description=helptext)
        cmd.add_argument("config", type=Path, help="YAML config file")
        cmd.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                         help="dotted overrides, e.g. train.lr=1e-3 model.adapter_options.rank=16")
        if name == "train":
            cmd.add_argument("--resume", action="store_true",
                             help="continue from the newest complete checkpoint (= train.resume=auto)")

    data = sub.add_parser("data", help="dataset tools").add_subparsers(dest="data_command", required=True)
    synth = data.add_parser("synth", help="write the synthetic world in every supported format")
    synth.add_argument("--out", type=Path, required=True, help="output folder")
    synth.add_argument("--num", type=int, default=2000, help="number of images (default 2000)")
    synth.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    synth.add_argument("--seed", type=int, default=0, help="random seed; same seed, same bytes")
    synth.add_argument("--val-fraction", type=float, default=0.2, help="share of images in val")

    lst = sub.add_parser("list", help="print a registry's names")
    lst.add_argument("registry", choices=["backbones", "adapters", "heads", "tasks", "datasets"])

    demo = sub.add_parser("demo", help="run the end-to-end demo on the synthetic world")
    demo.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder")
    demo.add_argument("--num", type=int, default=400, help="synthetic images to generate")
    demo.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .config import ConfigError

    try:
        return _COMMANDS[args.command](args)
    except ConfigError as err:
        print(f"umgkit: config error: {err}", file=sys.stderr)
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
    from .data.synth import generate_world

    summary = generate_world(args.out, num=args.num, size=args.size, seed=args.seed,
                             val_fraction=args.val_fraction)
    counts = ", ".join(f"{split}: {n}" for split, n in summary["counts"].items())
    print(f"wrote the synthetic world to {args.out} ({counts})")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    overrides = list(args.overrides) + (["train.resume=auto"] if getattr(args, "resume", False) else [])
    return _run_task(args.config, overrides, train=args.command == "train")


def _run_task(config: Path, overrides: list[str], train: bool) -> int:
    from ._builtins import import_builtins
    from .config import load_config
    from .engine import Trainer
    from .tasks._build import build_task

    cfg = load_config(config, overrides)
    import_builtins()
    trainer = Trainer(build_task(cfg), cfg)
    metrics = trainer.fit() if train else trainer.evaluate()
    if trainer.accelerator.is_main_process:
        for key, value in metrics.items():
            print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.out, num=args.num, seed=args.seed)
    return 0


_COMMANDS = {"train": _cmd_train, "eval": _cmd_train, "data": _cmd_data, "list": _cmd_list,
             "demo": _cmd_demo}


if __name__ == "__main__":
    sys.exit(main())
