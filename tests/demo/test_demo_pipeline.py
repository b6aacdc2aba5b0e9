"""The demo pipeline end to end in quick mode: every stage runs, the report holds this run's figures."""

import json
import re

import pytest

from umgkit.demo import TASK_STAGES, run_demo
from umgkit.demo.predictions import VAL_IMAGES

pytestmark = pytest.mark.slow


def test_quick_demo_writes_report_from_its_own_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative output folder, as `make demo` gives (demo_out)
    out = tmp_path / "demo"
    report = run_demo("demo", quick=True).read_text()
    backbone = out / "pretrain" / "backbone"
    assert (backbone / "model.safetensors").is_file() and (backbone / "config.json").is_file()
    for stage in TASK_STAGES:
        # each task adapted the pretrained backbone, and its row shows the value its own run logged
        config = (out / stage.name / "config.yaml").read_text()
        assert "umg:demo/pretrain/backbone" in config
        row = next(line for line in report.splitlines() if line.startswith(f"| {stage.name} |"))
        value = float(row.split("|")[3])
        logged = _last_logged(out / stage.name / "metrics.jsonl", f"val/{stage.metric}")
        assert value == pytest.approx(logged * (100 if stage.percent else 1), abs=0.01)
        assert re.search(r"\| [\d,]+ \| \d+\.\d\d \| \d+ s \|$", row), row
        assert json.loads((out / stage.name / "model" / "model.json").read_text())["complete"] is True
        if stage.name in VAL_IMAGES:  # the pictures are `umgkit predict` overlays of held-out images
            overlays = sorted((out / stage.name / "predict" / "overlays").glob("*.png"))
            assert len(overlays) == 3 and all(p.stat().st_size > 1000 for p in overlays)
            assert f"![{overlays[0].stem}]({stage.name}/predict/overlays/{overlays[0].name})" in report
    assert (out / "curves.png").stat().st_size > 5000
    assert "![curves](curves.png)" in report
    assert (out / "zeroshot_regions.png").stat().st_size > 1000 and "![zero-shot regions]" in report
    assert (out / "world_preview.png").stat().st_size > 1000


def _last_logged(path, key):
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [r[key] for r in rows if key in r][-1]
