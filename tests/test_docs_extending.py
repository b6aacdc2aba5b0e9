"""docs/extending.md as a user runs it: every code block, in order, in a fresh folder.

A block whose first line is ``# <file name>`` is that file (written as printed); the other ```python blocks
run as scripts; the ```bash blocks run line by line (``umgkit ...`` as ``python -m umgkit.cli ...``; the
guide's ``pip install -e .`` installs into the test's own folder instead of the shared environment).
Everything runs in subprocesses, so the guide's registrations never leak into the test session.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "extending.md"
FILE_HEADER = re.compile(r"#\s+(\S+\.(?:py|toml|yaml|yml|cfg))\s*$")


def guide_blocks() -> list[tuple[str, str]]:
    """``(language, code)`` of every fenced block, in page order."""
    return re.findall(r"```(\w+)\n(.*?)```", GUIDE.read_text(encoding="utf-8"), flags=re.S)


def test_the_guide_teaches_no_private_or_class_swapping_idioms():
    text = GUIDE.read_text(encoding="utf-8")
    assert "__class__" not in text and "_builtins" not in text
    languages = [lang for lang, _ in guide_blocks()]
    assert languages.count("python") == 2 and "bash" in languages
    headers = [FILE_HEADER.match(code.splitlines()[0]) for _, code in guide_blocks()]
    assert [h.group(1) for h in headers if h] == ["my_components.py", "pyproject.toml", "focal.yaml"]


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout[-2000:]}\n" \
                                 f"{done.stderr[-4000:]}"
    return done.stdout


def _bash_line(line: str, site: Path) -> list[str]:
    argv = shlex.split(line, comments=True)
    if not argv:
        return []
    if argv[0] == "umgkit":
        return [sys.executable, "-m", "umgkit.cli", *argv[1:]]
    if argv[:2] == ["pip", "install"] and argv[2:] == ["-e", "."]:
        return [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                "--quiet", "--target", str(site), "."]
    raise AssertionError(f"docs/extending.md runs {line!r}, which this test does not know how to run")


@pytest.mark.slow
def test_every_block_of_the_extending_guide_runs_in_order(tmp_path):
    site = tmp_path / "site"  # where the guide's `pip install -e .` puts the plugin's distribution
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), "MPLBACKEND": "Agg"}
    outputs: list[tuple[str, str]] = []  # (command, stdout)
    scripts = 0
    for language, code in guide_blocks():
        header = FILE_HEADER.match(code.splitlines()[0])
        if header:
            (tmp_path / header.group(1)).write_text(code, encoding="utf-8")
        elif language == "python":
            scripts += 1
            script = tmp_path / f"guide_block_{scripts}.py"
            script.write_text(code, encoding="utf-8")
            outputs.append((script.name, _run([sys.executable, script.name], tmp_path, env)))
        elif language == "bash":
            for line in code.splitlines():
                argv = _bash_line(line, site)
                if argv:
                    outputs.append((line, _run(argv, tmp_path, env)))
    ran = dict(outputs)

    # Python: the custom task trained, predicted through its own prediction type, evaluated the same
    first = ran["guide_block_1.py"]
    assert first.startswith("FocalClassificationTask ")
    assert "LabelPrediction [" in first
    # the command line found the plugin through its entry point, in every command
    listed = next(out for cmd, out in outputs if cmd.startswith("umgkit list tasks"))
    assert re.search(r"^focal_classification\s+Image classification with a focal loss\.$", listed, re.M)
    evaluated = next(out for cmd, out in outputs if cmd.startswith("umgkit eval runs/focal"))
    info = json.loads((tmp_path / "runs" / "focal" / "model" / "model.json").read_text())
    assert info["task"] == "focal_classification"
    assert f"top1: {info['metrics']['top1']:.4f}" in evaluated
    cli_info = json.loads((tmp_path / "runs" / "focal_cli" / "model" / "model.json").read_text())
    assert cli_info["complete"] and cli_info["adapter"]["method"] == "norm_tune"
    val_images = sorted((tmp_path / "world" / "imagefolder" / "val").rglob("*.png"))
    rows = (tmp_path / "preds_cli" / "labels.csv").read_text().splitlines()
    assert rows[0] == "file,label,score" and len(rows) == 1 + len(val_images)
    assert len(list((tmp_path / "preds_cli" / "overlays").glob("*.png"))) == len(val_images)
    assert not (tmp_path / "preds_cli" / "predictions.jsonl").exists()  # the task's writer, not the default
