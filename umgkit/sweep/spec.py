"""The sweep spec: which configs and axes to cross, what to search per method, and how to judge a trial.

A spec is a YAML mapping (read with ``yaml.safe_load``; nothing in it is executed):

``configs``  list of run configs, relative to the spec file: the task / dataset axis (required).
``overrides`` dotted ``key=value`` strings applied to every trial and final run; ``{dataset}`` in a value
              becomes the cell's dataset label (e.g. ``data.root=data/vtab/{dataset}``).
``final_overrides`` overrides of the seed re-runs only (e.g. VTAB-1k's
              ``data.train_split=train800val200 data.val_split=test``).
``axes``      mapping ``config.key -> [values]`` crossed with ``configs``; one search *cell* per
              combination. With unique config file stems, the first axis is the *method* (it picks the
              ``search`` entry and the table row) and the stem is the dataset/task; otherwise (no axes, or
              one method file per dataset folder as configs/paper/fewshot/) the stem is the method and
              the parent folder the dataset. Other axes show as the row's ``setting``.
``metric``    the final-metrics key to optimise, or a mapping ``config file -> key`` (the file as written
              under ``configs``, or its stem); omitted: the task's headline metric (`DEFAULT_METRICS`).
``direction`` ``maximize`` (default) or ``minimize``.
``search``    mapping ``method | default -> {config.key: space}``; a space is a list of choices or
              ``{low, high, log: false, step: null}`` (whole numbers for ``low`` and ``high`` give an
              integer range). A method without an entry uses ``default``; none at all: one trial per cell.
``trials``    trials per cell (the budget all workers share); with ``sampler: grid`` the grid's size by
              default.
``sampler``   ``tpe`` (default), ``grid`` (every space a list) or ``random``.
``pruner``    ``median`` (default: stop a trial whose logged val curve is below the median of earlier
              trials at the same step; needs ``train.eval_every``) or ``none``.
``seeds``     the final re-run axis: each cell's best setting trains once per seed (``seed=...``);
              default ``[0]``.
``launcher``  command prefix of every trial, e.g. ``[accelerate, launch, --num_processes, "2"]``;
              default: this Python.
``out``       the sweep folder (default ``sweep_out``), relative to the working directory as
              ``output_dir`` is; ``umgkit sweep --out`` replaces it.
"""

from __future__ import annotations

import itertools
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError

__all__ = ["SweepSpec", "Cell", "Space", "load_spec", "override_text", "DEFAULT_METRICS"]

# the headline val metric of each task (as the demo reports it)
DEFAULT_METRICS = {"classification": "top1", "retrieval": "mean_recall", "semantic": "mIoU", "panoptic": "PQ",
                   "detection": "box_AP50"}
_KEYS = ("configs", "overrides", "final_overrides", "axes", "metric", "direction", "search", "trials",
         "sampler", "pruner", "seeds", "launcher", "out")
_SAMPLERS = ("tpe", "grid", "random")
_PRUNERS = ("median", "none")


@dataclass(frozen=True)
class Space:
    """One searched config key: ``choices`` or a ``low``..``high`` range (integer when both are ints)."""

    key: str
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None

    @property
    def is_int(self) -> bool:
        return self.choices is None and isinstance(self.low, int) and isinstance(self.high, int)

    def first(self) -> Any:
        """A valid value (the first choice or ``low``), for load-checking the key."""
        return self.choices[0] if self.choices is not None else self.low


@dataclass(frozen=True)
class Cell:
    """One search: a config crossed with one value of every axis."""

    name: str  # folder name under trials/ and final/, and the Optuna study name
    config: Path
    dataset: str  # the config's label in tables (its stem, or parent/stem when stems repeat)
    method: str  # value of the method axis, or the config's stem (see the module docstring)
    setting: str  # the other axes' key=value pairs ("" when none)
    axes: tuple[tuple[str, Any], ...]  # (key, value) pairs of this cell
    metric: str | None  # None: the task's default, chosen once the config is loaded
    spaces: tuple[Space, ...]

    def overrides(self) -> list[str]:
        return [f"{key}={override_text(value)}" for key, value in self.axes]


@dataclass
class SweepSpec:
    path: Path
    configs: list[Path]
    overrides: list[str] = field(default_factory=list)
    final_overrides: list[str] = field(default_factory=list)
    axes: dict[str, list] = field(default_factory=dict)
    metric: str | dict[str, str] | None = None
    direction: str = "maximize"
    search: dict[str, tuple[Space, ...]] = field(default_factory=dict)
    trials: int | None = None
    sampler: str = "tpe"
    pruner: str = "median"
    seeds: list[int] = field(default_factory=lambda: [0])
    launcher: list[str] = field(default_factory=list)
    out: str = "sweep_out"

    def cells(self) -> list[Cell]:
        """Every config x axis combination, in spec order."""
        stems = [c.stem for c in self.configs]
        method_axis = bool(self.axes) and len(set(stems)) == len(stems)
        keys = list(self.axes)
        combos = list(itertools.product(*(self.axes[k] for k in keys))) if keys else [()]
        cells = []
        for config in self.configs:
            dataset = config.stem if method_axis else config.parent.name
            for combo in combos:
                axes = tuple(zip(keys, combo, strict=True))
                method = str(combo[0]) if method_axis else config.stem
                setting = " ".join(f"{k}={v}" for k, v in (axes[1:] if method_axis else axes))
                spaces = self.search.get(method, self.search.get("default", ()))
                label = config.stem if method_axis else f"{dataset}_{config.stem}"
                name = "-".join([label, *(_slug(v) for v in combo)])
                metric = self._metric_for(config, dataset)
                cells.append(Cell(name, config, dataset, method, setting, axes, metric, spaces))
        return cells

    def cell_overrides(self, cell: Cell, *, final: bool = False) -> list[str]:
        """What a trial (or, with ``final``, a seed re-run) of ``cell`` adds to its config, in order:
        the spec's overrides, the final ones, the cell's axis values."""
        shared = [*self.overrides, *(self.final_overrides if final else [])]
        return [item.replace("{dataset}", cell.dataset) for item in shared] + cell.overrides()

    def budget(self, cell: Cell) -> int:
        """Trials of ``cell``: ``trials``, or the grid's size, or 1 when nothing is searched."""
        if self.trials is not None:
            return self.trials
        if self.sampler == "grid" and cell.spaces:
            return math.prod(len(s.choices) for s in cell.spaces)
        return 1

    def _metric_for(self, config: Path, dataset: str) -> str | None:
        if not isinstance(self.metric, dict):
            return self.metric
        for key in (dataset, config.stem, config.name):
            if key in self.metric:
                return self.metric[key]
        for key, value in self.metric.items():
            if (self.path.parent / key).resolve() == config:
                return value
        return None


def load_spec(path: str | os.PathLike) -> SweepSpec:
    """Read and check a spec file; every mistake is a `ConfigError` naming the file, key, value and fix."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sweep spec {path} does not exist; give a YAML file (see configs/sweeps/).")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"sweep spec {path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"sweep spec {path} must be a mapping with at least 'configs'; it holds "
                          f"{type(data).__name__}.")
    bad = sorted(set(data) - set(_KEYS))
    if bad:
        raise ConfigError(f"sweep spec {path}: unknown key {bad[0]!r}; the keys are {', '.join(_KEYS)}.")

    def fail(key: str, value: Any, expected: str) -> ConfigError:
        return ConfigError(f"sweep spec {path}: {key}={value!r}: expected {expected}.")

    configs = data.get("configs")
    if not isinstance(configs, list) or not configs or not all(isinstance(c, str) for c in configs):
        raise fail("configs", configs, "a non-empty list of config files relative to the spec")
    resolved = []
    for item in configs:
        file = (path.parent / item).resolve()
        if not file.is_file():
            raise fail("configs", item, f"an existing config file relative to the spec (looked at {file})")
        resolved.append(file)
    spec = SweepSpec(path=path, configs=resolved)
    spec.overrides = _strings(data.get("overrides", []), "overrides", fail, "a list of key=value strings")
    spec.final_overrides = _strings(data.get("final_overrides", []), "final_overrides", fail,
                                    "a list of key=value strings")
    for key, items in (("overrides", spec.overrides), ("final_overrides", spec.final_overrides)):
        for item in items:
            if "=" not in item:
                raise fail(key, item, "key=value, e.g. train.max_steps=60")
    axes = data.get("axes") or {}
    if not isinstance(axes, dict):
        raise fail("axes", axes, "a mapping config.key -> list of values")
    for key, values in axes.items():
        if not isinstance(values, list) or not values:
            raise fail(f"axes.{key}", values, "a non-empty list of values")
    spec.axes = {str(k): list(v) for k, v in axes.items()}
    metric = data.get("metric")
    if metric is not None and not isinstance(metric, (str, dict)):
        raise fail("metric", metric, "a metric name (e.g. top1) or a mapping config -> metric name")
    spec.metric = metric
    spec.direction = _choice(data.get("direction", "maximize"), "direction", ("maximize", "minimize"), fail)
    spec.sampler = _choice(data.get("sampler", "tpe"), "sampler", _SAMPLERS, fail)
    spec.pruner = _choice(str(data.get("pruner", "median")).lower(), "pruner", _PRUNERS, fail)
    search = data.get("search") or {}
    if not isinstance(search, dict):
        raise fail("search", search, "a mapping method (or default) -> {config.key: space}")
    spec.search = {str(method): _spaces(spaces, f"search.{method}", fail)
                   for method, spaces in search.items()}
    methods = sorted({c.method for c in spec.cells()})
    for method in spec.search:
        if method != "default" and method not in methods:
            raise fail("search", method, f"'default' or a method of the sweep ({', '.join(methods)})")
    if spec.sampler == "grid":
        for method, spaces in spec.search.items():
            for space in spaces:
                if space.choices is None:
                    raise fail(f"search.{method}.{space.key}", {"low": space.low, "high": space.high},
                               "a list of choices with sampler: grid (or use sampler: tpe)")
    trials = data.get("trials")
    if trials is not None and (not isinstance(trials, int) or isinstance(trials, bool) or trials < 1):
        raise fail("trials", trials, "a whole number >= 1 (trials per cell)")
    spec.trials = trials
    seeds = data.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool)
                                                            for s in seeds):
        raise fail("seeds", seeds, "a non-empty list of whole numbers, e.g. [0, 1, 2]")
    spec.seeds = seeds
    spec.launcher = _strings(data.get("launcher", []), "launcher", fail,
                             "a list of strings, e.g. [accelerate, launch, --num_processes, '2']")
    out = data.get("out", "sweep_out")
    if not isinstance(out, str) or not out:
        raise fail("out", out, "a folder path")
    spec.out = out
    names = [c.name for c in spec.cells()]
    if len(set(names)) != len(names):
        raise fail("axes", spec.axes, "values whose names differ (two cells would share a folder)")
    return spec


def _spaces(spaces: Any, where: str, fail) -> tuple[Space, ...]:
    if not isinstance(spaces, dict):
        raise fail(where, spaces, "a mapping config.key -> list of choices or {low, high, log}")
    out = []
    for key, space in spaces.items():
        if isinstance(space, list):
            if not space:
                raise fail(f"{where}.{key}", space, "a non-empty list of choices")
            out.append(Space(str(key), choices=tuple(space)))
            continue
        if not isinstance(space, dict) or not {"low", "high"} <= set(space) or set(space) - {"low", "high",
                                                                                          "log", "step"}:
            raise fail(f"{where}.{key}", space, "a list of choices or {low: A, high: B, log: true|false}")
        low, high = space["low"], space["high"]
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high))
        if not numbers or low > high:
            raise fail(f"{where}.{key}", space, "numbers with low <= high")
        log = bool(space.get("log", False))
        if log and low <= 0:
            raise fail(f"{where}.{key}", space, "low > 0 with log: true")
        out.append(Space(str(key), low=low, high=high, log=log, step=space.get("step")))
    return tuple(out)


def _strings(value: Any, key: str, fail, expected: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
        raise fail(key, value, expected)
    return [str(v) for v in value]


def _choice(value: Any, key: str, allowed: tuple[str, ...], fail) -> str:
    if value not in allowed:
        raise fail(key, value, " or ".join(allowed))
    return value


def _slug(value: Any) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "_", str(value)).strip("_") or "value"


def override_text(value: Any) -> str:
    """``value`` as override text that YAML parses back to it (``1e-3`` stays a float)."""
    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
