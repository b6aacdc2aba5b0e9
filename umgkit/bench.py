"""``umgkit bench``: run every script in ``benchmarks/``, collect their JSON, write a summary.

Each benchmark runs in its own subprocess (so a crash or a timeout in one cannot hide the others) and
prints one JSON object on stdout. A benchmark states its headline figures as
``"figures": [{"figure": text, "ratio": number, "target": ">= 0.95" | "<= 1.0" | null,
"detail": optional text}]``; for one that does not, the top-level numbers named in a ``"targets":
{key: ">= 2.5"}`` mapping, and every other top-level number whose key mentions ``ratio`` or
``speedup``, become its figures. Writes ``OUT/bench.json`` (everything, raw results
included) and ``OUT/bench.md`` (benchmark, figure, ratio, target, pass / below target / failed).

Exit status: 1 when a benchmark failed to run (crash, timeout, no JSON); with ``strict`` also when a
figure misses its target (CPU timings on a shared machine are noisy, so that is opt-in).

    umgkit bench --out bench_out           # CPU-sized flags on CPU, the benchmarks' own defaults on GPU
    umgkit bench --out bench_out --quick   # the smallest settings: a smoke run
"""

from __future__ import annotations

import json
import operator
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["BenchSpec", "SPECS", "find_benchmarks", "parse_json_output", "run_bench", "summary_markdown"]


@dataclass(frozen=True)
class BenchSpec:
    """Command-line flags for one benchmark script, by setting (flags the script does not know would fail)."""

    cpu: tuple[str, ...] = ()  # full run on CPU: sized so the whole `umgkit bench` stays under 11 minutes
    quick: tuple[str, ...] = ()  # --quick (CPU or GPU): the smallest meaningful run
    gpu: tuple[str, ...] = ()  # full run on a GPU: the paper-sized settings
    # Per-benchmark limits add up to the 660 s budget, so one slow benchmark cannot starve the others.
    timeout_s: float = 150.0


# Benchmarks not listed here run with no flags (their own defaults) and the default timeout.
SPECS: dict[str, BenchSpec] = {
    "adapters": BenchSpec(
        cpu=("--backbone", "umg:small", "--image-size", "64", "--batch", "4", "--steps", "2", "--warmup", "1",
             "--infer-steps", "5", "--adapters", "lora", "adaptformer"),
        quick=("--backbone", "umg:tiny", "--image-size", "64", "--steps", "2", "--warmup", "1",
               "--infer-steps", "4", "--adapters", "lora", "adaptformer"),
        timeout_s=150.0),
    "data_pipeline": BenchSpec(
        cpu=("--num", "200", "--size", "256"),
        quick=("--num", "60", "--size", "128", "--image-size", "96"),
        timeout_s=60.0),
    "feature_cache": BenchSpec(
        cpu=("--backbone", "umg:small", "--image-size", "128", "--num", "100"),
        quick=("--backbone", "umg:tiny", "--image-size", "64", "--num", "60"),
        timeout_s=60.0),
    "fewshot": BenchSpec(  # seconds per run of each few-shot method; the docs table is its full default run
        cpu=("--shots", "4", "--seeds", "1", "--steps", "5", "--no-base-to-novel"),
        quick=("--shots", "1", "--seeds", "1", "--steps", "2", "--no-base-to-novel"),
        gpu=("--shots", "16", "--seeds", "1", "--no-base-to-novel"),
        timeout_s=90.0),
    "predict": BenchSpec(
        cpu=("--backbone", "umg:small", "--image-size", "224", "--images", "16", "--rounds", "2"),
        quick=("--backbone", "umg:tiny", "--image-size", "64", "--batch", "4", "--images", "8",
               "--rounds", "1"),
        gpu=("--backbone", "umg:base16", "--image-size", "224", "--batch", "32", "--images", "256"),
        timeout_s=60.0),
    "pretrain": BenchSpec(
        cpu=("--backbone", "umg:tiny", "--image-size", "128", "--steps", "2", "--warmup", "1"),
        quick=("--backbone", "umg:tiny", "--image-size", "64", "--steps", "2", "--warmup", "1"),
        timeout_s=120.0),
    "train_step": BenchSpec(
        cpu=("--image-size", "112", "--steps", "3", "--warmup", "1", "--rounds", "2"),
        quick=("--image-size", "96", "--steps", "2", "--warmup", "1", "--rounds", "1"),
        gpu=("--model", "vit_base_patch16_224", "--image-size", "224", "--batch", "64", "--steps", "20",
             "--warmup", "5"),
        timeout_s=120.0),
}
_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}


@dataclass
class BenchResult:
    name: str
    command: list[str]
    status: str = "ok"  # ok | failed | timeout
    seconds: float = 0.0
    result: dict[str, Any] | None = None
    error: str = ""
    figures: list[dict[str, Any]] = field(default_factory=list)


def find_benchmarks(folder: Path) -> list[Path]:
    """Every ``*.py`` in ``folder`` (not ``_private.py``), sorted: a new benchmark is picked up by itself."""
    if not folder.is_dir():
        raise FileNotFoundError(f"benchmark folder {folder} does not exist; run `umgkit bench` from a "
                                "checkout of umgkit (it holds benchmarks/) or pass --benchmarks DIR.")
    return sorted(p for p in folder.glob("*.py") if not p.name.startswith("_"))


def parse_json_output(stdout: str) -> dict[str, Any]:
    """The last JSON object a benchmark printed (whole stdout first, else from the last ``{`` line on)."""
    text = stdout.strip()
    try:
        value = json.loads(text)
        if isinstance(value, dict):
            return value
    except json.JSONDecodeError:
        pass
    lines = text.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].lstrip().startswith("{"):
            try:
                value = json.loads("\n".join(lines[i:]))
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    raise ValueError("printed no JSON object on stdout")


def figures_of(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The benchmark's declared figures, each with ``passed`` (True / False / None = no target)."""
    declared = result.get("figures")
    if declared is None:  # ratios named in a "targets" mapping, then other *ratio* / *speedup* numbers
        targets = result.get("targets") if isinstance(result.get("targets"), Mapping) else {}
        numbers = {k: v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        keys = [k for k in targets if k in numbers]
        keys += [k for k in numbers if k not in keys and ("ratio" in k or "speedup" in k)]
        declared = [{"figure": k, "ratio": numbers[k], "target": targets.get(k)} for k in keys]
    out = []
    for fig in declared:
        fig = dict(fig)
        fig["passed"] = _meets(fig.get("ratio"), fig.get("target"))
        out.append(fig)
    return out


def _meets(ratio: Any, target: str | None) -> bool | None:
    if not target or not isinstance(ratio, (int, float)):
        return None
    op, _, value = str(target).strip().partition(" ")
    if op not in _OPS:
        raise ValueError(f"figure target {target!r}: write it as '<op> <number>' with op in {sorted(_OPS)}.")
    return bool(_OPS[op](float(ratio), float(value)))


def _device() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return f"cuda ({torch.cuda.get_device_name(0)})"
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return f"cpu ({os.cpu_count()} cores)"


def run_one(script: Path, flags: Sequence[str], timeout_s: float) -> BenchResult:
    """Run one benchmark script in a subprocess and parse its JSON; never raises for its failures.

    The script runs in its own process group, so a timeout also ends the workers it started.
    """
    command = [sys.executable, str(script), *flags]
    res = BenchResult(name=script.stem, command=command)
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=script.parent.parent, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=max(timeout_s, 1.0))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, stderr = proc.communicate()
        res.status, res.seconds = "timeout", time.perf_counter() - start
        res.error = f"no result after {timeout_s:.0f} s. " + _tail(stderr)
        return res
    res.seconds = time.perf_counter() - start
    if proc.returncode != 0:
        res.status, res.error = "failed", f"exit status {proc.returncode}. " + _tail(stderr)
        return res
    try:
        res.result = parse_json_output(stdout)
        res.figures = figures_of(res.result)
    except ValueError as err:
        res.status, res.error = "failed", f"{err}. " + _tail(stderr)
    return res


def _tail(text: str | bytes | None, lines: int = 15) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return "\n".join((text or "").strip().splitlines()[-lines:])


def run_bench(out: Path, *, benchmarks: Path, quick: bool = False, only: Sequence[str] = (),
              budget_s: float = 660.0, specs: Mapping[str, BenchSpec] = SPECS,
              gpu: bool | None = None) -> dict[str, Any]:
    """Run the benchmarks in ``benchmarks`` and write ``out/bench.json`` and ``out/bench.md``.

    ``budget_s`` bounds the whole run: each benchmark gets ``min(its timeout, time left)``, so the
    command ends in time even when a benchmark hangs (it is then reported as a timeout).
    """
    if gpu is None:
        import torch

        gpu = torch.cuda.is_available()
    scripts = find_benchmarks(benchmarks)
    if only:
        unknown = sorted(set(only) - {s.stem for s in scripts})
        if unknown:
            raise ValueError(f"unknown benchmark(s) {unknown}; found in {benchmarks}: "
                             f"{[s.stem for s in scripts]}.")
        scripts = [s for s in scripts if s.stem in only]
    setting = "quick" if quick else ("gpu" if gpu else "cpu")
    started, results = time.time(), []
    for script in scripts:
        spec = specs.get(script.stem, BenchSpec())
        flags = getattr(spec, setting)
        print(f"[bench] {script.stem} {' '.join(flags)}".rstrip(), file=sys.stderr, flush=True)
        left = budget_s - (time.time() - started)
        res = run_one(script, flags, min(spec.timeout_s, left))
        print(f"[bench] {script.stem}: {res.status} in {res.seconds:.0f} s", file=sys.stderr, flush=True)
        results.append(res)
    report = {
        "device": _device(), "setting": setting, "python": platform.python_version(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "total_s": round(time.time() - started, 1),
        "benchmarks": {r.name: {"status": r.status, "seconds": round(r.seconds, 1),
                                "command": [Path(r.command[0]).name, *r.command[1:]], "error": r.error,
                                "figures": r.figures, "result": r.result} for r in results},
    }
    out.mkdir(parents=True, exist_ok=True)
    from ._io import atomic_write_text

    atomic_write_text(out / "bench.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(out / "bench.md", summary_markdown(report))
    return report


def summary_markdown(report: Mapping[str, Any]) -> str:
    """The table of figures (and the errors of failed benchmarks) as Markdown."""
    lines = ["# umgkit bench", "",
             f"Device: {report['device']} · setting: {report['setting']} · started {report['started']} · "
             f"total {report['total_s']} s. Each ratio is measured within one run of its benchmark.", "",
             "| benchmark | figure | ratio | target | result |", "| --- | --- | --- | --- | --- |"]
    details, errors = [], []
    for name, b in report["benchmarks"].items():
        if b["status"] != "ok":
            lines.append(f"| {name} | (did not run to the end) | | | {b['status']} |")
            errors.append(f"### {name}: {b['status']}\n\n```\n{b['error']}\n```\n")
            continue
        if not b["figures"]:
            lines.append(f"| {name} | (no figures declared) | | | ran |")
        for fig in b["figures"]:
            ratio = fig.get("ratio")
            shown = f"{ratio:.3f}" if isinstance(ratio, (int, float)) else "n/a"
            verdict = {True: "pass", False: "below target", None: "(no target)"}[fig["passed"]]
            target = _cell(fig.get("target") or "")
            lines.append(f"| {name} | {_cell(fig.get('figure', ''))} | {shown} | {target} | {verdict} |")
            if fig.get("detail"):
                details.append(f"- {name}, {fig.get('figure', '')}: {fig['detail']}")
    text = "\n".join(lines) + "\n"
    if details:
        text += "\n## Absolute figures\n\n" + "\n".join(details) + "\n"
    if errors:
        text += "\n## Failures\n\n" + "\n".join(errors)
    return text


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def exit_status(report: Mapping[str, Any], strict: bool = False) -> int:
    """1 if a benchmark failed (or, with ``strict``, a figure missed its target), else 0."""
    benches = report["benchmarks"].values()
    if any(b["status"] != "ok" for b in benches):
        return 1
    if strict and any(f["passed"] is False for b in benches for f in b["figures"]):
        return 1
    return 0
