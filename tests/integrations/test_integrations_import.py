"""The bridges are optional: ``import umgkit`` (and its builtins, and the CLI) never imports detectron2 or
mmseg, and a missing framework gives one clear error with install instructions."""

from __future__ import annotations

import subprocess
import sys

import pytest

FRAMEWORKS = ("detectron2", "mmseg", "mmcv", "mmengine")


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_umgkit_and_its_builtins_import_no_framework():
    code = ("import sys, umgkit, umgkit.integrations, umgkit.cli\n"
            "from umgkit._builtins import import_builtins\n"
            "import_builtins()\n"
            "umgkit.cli.build_parser()\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FRAMEWORKS!r}))\n")
    run = _python(code)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


@pytest.mark.parametrize("package, framework, hint", [
    ("umgkit.integrations.d2", "detectron2", "pip install --no-build-isolation"),
    ("umgkit.integrations.mmseg", "mmseg", "tools/mmseg_env.sh ENV_DIR"),
])
def test_bridge_without_its_framework_raises_with_install_hint(package, framework, hint):
    run = _python(f"import sys\nsys.modules[{framework!r}] = None\nimport {package}\n")
    assert run.returncode != 0
    assert "ImportError" in run.stderr and hint in run.stderr


def test_d2_train_without_detectron2_exits_2_with_instructions(monkeypatch, capsys, tmp_path):
    import umgkit.integrations
    from umgkit.cli import main

    monkeypatch.setattr(umgkit.integrations, "is_detectron2_available", lambda: False)
    assert main(["d2-train", str(tmp_path / "cfg.yaml"), "SOLVER.MAX_ITER", "2"]) == 2
    err = capsys.readouterr().err
    assert "detectron2 is not installed" in err and "docs/integrations.md" in err
