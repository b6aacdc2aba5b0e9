"""Generate ``docs/config_reference.md`` from the code, so the documented keys cannot drift.

Sources, all read from the code itself:
- the run schema (`RunConfig` and its nested sections): each field's ``# comment`` is its meaning;
- every built-in task's module-level ``OPTIONS`` (found through the TASKS registry, so a new task
  appears without editing this file; a built-in task without ``OPTIONS`` is an error);
- every adapter's ``config_cls`` and every head's options dataclass (field comments, inherited fields
  included), and the tasks each head serves;
- every dataset reader's keyword parameters and defaults.

    python -m umgkit.config.reference --out docs/config_reference.md   # or: umgkit docs config-reference
    python -m umgkit.config.reference --check docs/config_reference.md
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import inspect
import io
import sys
import textwrap
import tokenize
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .options import Option
from .schema import RunConfig

__all__ = ["ReferenceDocError", "config_reference", "field_comments", "main"]

COMMAND = "python -m umgkit.config.reference --out docs/config_reference.md"
# Arguments the task or the engine passes itself; they are not user options.
_READER_COMMON = {"self", "root", "split", "transform", "skip_bad", "num_classes", "limit", "records"}


class ReferenceDocError(RuntimeError):
    """Something the reference cannot document (a field without a comment, a task without OPTIONS)."""


def field_comments(cls: type) -> dict[str, str]:
    """``{field: trailing # comment}`` of a dataclass's annotated fields, base classes included.

    Read with `ast` + `tokenize` from the class source, so a comment belongs to the line that ends the
    field's statement (fields spanning several lines keep their comment on the last one).
    """
    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or not dataclasses.is_dataclass(klass):
            continue
        source = textwrap.dedent(inspect.getsource(klass))
        by_line = {tok.start[0]: tok.string.lstrip("#").strip()
                   for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                   if tok.type == tokenize.COMMENT}
        node = ast.parse(source).body[0]
        for stmt in node.body:
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                text = by_line.get(stmt.end_lineno) or by_line.get(stmt.lineno)
                if text:
                    comments[stmt.target.id] = text
    return comments


def config_reference() -> str:
    """The whole reference page as Markdown (deterministic: sorted names, no timestamps)."""
    from .._builtins import import_builtins
    from ..registry import ADAPTERS, BACKBONES, DATASETS, HEADS, TASKS

    import_builtins()
    parts = [
        "# Config reference\n",
        f"Generated from the code by `{COMMAND}` (or `umgkit docs config-reference`); do not edit by "
        "hand. `tests/config/test_config_reference.py` fails when this file and the code disagree.\n",
        "A run config is YAML validated into `RunConfig` (`umgkit/config/schema.py`): an unknown key or a "
        "wrong type stops the run with an error naming the file and the key. Any key can be overridden "
        "on the command line as `section.key=value`. Defaults are shown as YAML values.\n",
        "Switching a method replaces its options: when a child config or an override names another "
        "`model.adapter`, `model.head` or `model.backbone` than the base config, the base's "
        "`model.adapter_options`, `model.head_options` or `model.pretrained` are dropped; options given "
        "together with the switch apply to the new method.\n",
        "Contents: [run config](#run-config) · [task options](#task-options-task_options) · "
        "[adapter options](#adapter-options-modeladapter_options) · "
        "[head options](#head-options-modelhead_options) · "
        "[dataset reader options](#dataset-reader-options-dataoptions) · "
        "[backbones](#backbones-modelbackbone)\n",
        "## Run config\n",
    ]
    parts += _schema_sections(RunConfig, "")
    parts.append("## Task options (`task_options`)\n")
    parts.append("Checked by the task named in `task:`; an unknown option is an error.\n")
    for name in _builtin_names(TASKS):
        parts.append(_task_section(name, TASKS.get(name)))
    parts.append("## Adapter options (`model.adapter_options`)\n")
    parts.append("Checked by the adapter named in `model.adapter` (its options dataclass); an unknown option "
                 "is an error naming the valid ones.\n")
    for name in _builtin_names(ADAPTERS):
        parts.append(_adapter_section(name, ADAPTERS.get(name)))
    parts.append("## Head options (`model.head_options`)\n")
    parts.append("Checked by the head named in `model.head` (its options dataclass; empty = the task's "
                 "default head); an unknown option is an error naming the valid ones. A head serves the "
                 "tasks it lists: naming a head of another task stops the run when the config is loaded. "
                 "`backbone`, `num_classes` and `class_names` are passed by the task.\n")
    for name in _builtin_names(HEADS):
        parts.append(_head_section(name, HEADS))
    parts.append("## Dataset reader options (`data.options`)\n")
    parts.append("Keyword arguments of the reader named in `data.format` (empty = the task's default "
                 "reader); `data.root`, the split, `data.skip_bad`, `data.num_classes` and `data.limit` are "
                 "passed for you. See [datasets.md](datasets.md) for each layout.\n")
    for name in _builtin_names(DATASETS):
        parts.append(_reader_section(name, DATASETS.get(name)))
    parts.append("## Backbones (`model.backbone`)\n")
    builtin = set(_builtin_names(BACKBONES))
    rows = [[f"`{n}`", doc] for n, doc in BACKBONES.describe() if n in builtin]
    parts.append(_table(["name", "what it loads"], rows))
    return "\n".join(parts).rstrip() + "\n"


# -- sections ---------------------------------------------------------------------------------------------
def _schema_sections(cls: type, prefix: str) -> list[str]:
    comments = field_comments(cls)
    rows, nested = [], []
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(_default(f)):
            nested.append((key, type(_default(f))))
            continue
        meaning = comments.get(f.name)
        if not meaning:
            raise ReferenceDocError(f"{cls.__module__}.{cls.__name__}.{f.name} has no `# comment` giving its "
                                 f"meaning; add one on the field's line, then run `{COMMAND}`.")
        default = "(required)" if f.metadata.get("required") else _yaml(_default(f))
        rows.append([f"`{key}`", f"`{_type_name(cls, f)}`", default, meaning])
    title = f"### `{prefix.rstrip('.')}`\n" if prefix else ""
    out = [title + _table(["key", "type", "default", "meaning"], rows)] if rows else []
    for key, sub in nested:
        out += _schema_sections(sub, key + ".")
    return out


def _task_section(name: str, builder: Callable) -> str:
    module = importlib.import_module(builder.__module__)
    options = getattr(module, "OPTIONS", None)
    if not isinstance(options, Mapping) or not all(isinstance(o, Option) for o in options.values()):
        raise ReferenceDocError(f"task '{name}' ({module.__name__}) declares no module-level OPTIONS = "
                             "{'name': Option(default, 'meaning'), ...}; declare its task_options there "
                             "(see umgkit/config/options.py) and validate with parse_options.")
    rows = []
    for key in sorted(options):
        if not options[key].help.strip():
            raise ReferenceDocError(f"task '{name}': option '{key}' in {module.__name__}.OPTIONS has no "
                                    "help text.")
        rows.append([f"`{key}`", _yaml(options[key].default), options[key].help])
    body = _table(["option", "default", "meaning"], rows) if rows else "(no options)\n"
    return f"### `{name}`\n\n{_first_para(module.__doc__)}\n\n{body}"


def _adapter_section(name: str, adapter_cls: Any) -> str:
    body = _options_table(f"adapter '{name}'", adapter_cls.config_cls)
    merge = "mergeable" if getattr(adapter_cls, "mergeable", False) else "not mergeable"
    return f"### `{name}`\n\n{_first_para(adapter_cls.__doc__)} ({merge})\n\n{body}"


def _head_section(name: str, heads: Any) -> str:
    tasks = ", ".join(f"`{t}`" for t in heads.tasks(name))
    body = _options_table(f"head '{name}'", heads.options_class(name))
    return f"### `{name}`\n\n{_first_para(heads.get(name).__doc__)}\n\nServes: {tasks}.\n\n{body}"


def _options_table(what: str, config_cls: type | None) -> str:
    """The option / type / default / meaning table of an options dataclass (None: no options)."""
    if config_cls is None:
        return "(no options)\n"
    comments = field_comments(config_cls)
    rows = []
    for f in dataclasses.fields(config_cls):
        if f.name not in comments:
            where = f"{config_cls.__module__}.{config_cls.__name__}.{f.name}"
            raise ReferenceDocError(f"{what}: {where} has no `# comment` giving its meaning; add one, then "
                                    f"run `{COMMAND}`.")
        rows.append([f"`{f.name}`", f"`{_type_name(config_cls, f)}`", _yaml(_default(f)), comments[f.name]])
    return _table(["option", "type", "default", "meaning"], rows) if rows else "(no options)\n"


def _reader_section(name: str, builder: Callable) -> str:
    rows, more = _keyword_rows(builder, _READER_COMMON)
    if more:  # the builder forwards **options to the dataset class: document that class's keywords too
        target = _returned_class(builder)
        if target is not None:
            seen = {r[0] for r in rows}
            extra, _ = _keyword_rows(target.__init__, _READER_COMMON)
            rows += [r for r in extra if r[0] not in seen]
    body = _table(["option", "default"], rows) if rows else "(no options)\n"
    return f"### `{name}`\n\n{_first_para(builder.__doc__)}\n\n{body}"


# -- helpers ----------------------------------------------------------------------------------------------
def _builtin_names(registry: Any) -> list[str]:
    """Names registered by umgkit itself (entries a user registered at run time are not documented)."""
    return [n for n in registry.names() if getattr(registry.get(n), "__module__", "").startswith("umgkit.")]


def _keyword_rows(fn: Callable, skip: Iterable[str]) -> tuple[list[list[str]], bool]:
    skip, rows, var_kw = set(skip), [], False
    for p in inspect.signature(fn).parameters.values():
        if p.kind is p.VAR_KEYWORD:
            var_kw = True
        elif p.kind is not p.VAR_POSITIONAL and p.name not in skip:
            rows.append([f"`{p.name}`", "(required)" if p.default is p.empty else _yaml(p.default)])
    return rows, var_kw


def _returned_class(fn: Callable) -> type | None:
    ann = inspect.signature(fn).return_annotation
    if isinstance(ann, str):
        ann = getattr(inspect.getmodule(fn), ann, None)
    return ann if isinstance(ann, type) else None


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _type_name(cls: type, f: dataclasses.Field) -> str:
    tp = f.type
    if not isinstance(tp, str):
        tp = getattr(tp, "__name__", str(tp))
    return tp.replace("typing.", "")


def _yaml(value: Any) -> str:
    """A default as the YAML a user would write, in backticks."""
    if value is dataclasses.MISSING:
        return "(required)"
    return f"`{_plain(value)}`"


def _plain(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '""' if value == "" else value
    if isinstance(value, float):
        return repr(round(value, 6))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_plain(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_plain(v)}" for k, v in value.items()) + "}"
    return str(value)


def _first_para(doc: str | None) -> str:
    text = inspect.cleandoc(doc or "").split("\n\n", 1)[0]
    return _md(" ".join(text.split()))


def _md(text: str) -> str:
    """Outside `code` spans, ``<...>`` would be read as an HTML tag and vanish: escape it there only."""
    spans = text.split("`")
    return "`".join(p if i % 2 else p.replace("<", "&lt;").replace(">", "&gt;") for i, p in enumerate(spans))


def _table(header: list[str], rows: list[list[str]]) -> str:
    def cell(text: str) -> str:
        return _md(str(text).replace("|", "\\|").replace("\n", " "))

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m umgkit.config.reference",
                                     description="Write (or check) the generated config reference.")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--out", type=Path, help="write the reference here (default: print it)")
    group.add_argument("--check", type=Path, help="exit 1 if this file differs from the generated text")
    args = parser.parse_args(argv)
    text = config_reference()
    if args.check:
        current = args.check.read_text(encoding="utf-8") if args.check.is_file() else ""
        if current != text:
            print(f"{args.check} is out of date; regenerate it with `{COMMAND}`.", file=sys.stderr)
            return 1
        return 0
    if args.out:
        from .._io import atomic_write_text, check_output_folder

        if args.out.is_dir():
            raise ConfigError(f"--out {args.out} is a folder; give a file name, e.g. "
                              f"{args.out / 'config_reference.md'}.")
        check_output_folder(args.out.parent, "--out's folder")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, text)
        print(f"wrote {args.out}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
