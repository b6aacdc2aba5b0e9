"""docs/sweeps.md as a user runs it: every `umgkit sweep` command of its bash blocks. `--check` commands run
as printed; the quick sweep runs for real (in a temporary folder) and `--report` rebuilds its report; the
commands that need the demo's pretrained backbone (a full pet_vs_full run) are load-checked instead."""

from __future__ import annotations

from pathlib import Path

import doc_blocks
import pytest

from umgkit.cli import main

pytest.importorskip("optuna")

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "sweeps.md"


def page_commands() -> list[list[str]]:
    return doc_blocks.page_commands(PAGE)


def test_page_lists_every_shipped_spec_and_the_table_markers():
    text = PAGE.read_text(encoding="utf-8")
    specs = {p.name for p in (ROOT / "configs" / "sweeps").glob("*.yaml")}
    named = {Path(a).name for argv in page_commands() for a in argv if a.endswith(".yaml")}
    assert named == specs
    assert text.index("<!-- sweep-table:start -->") < text.index("<!-- sweep-table:end -->")


def test_check_commands_run_as_printed(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    checks = [argv for argv in page_commands() if "--check" in argv]
    assert len(checks) == 4
    for argv in checks:
        assert main(argv) == 0, argv
    assert capsys.readouterr().out.count("cells load") == 4


@pytest.mark.slow
def test_quick_sweep_and_report_as_printed(tmp_path, monkeypatch):
    from umgkit.sweep import load_spec

    monkeypatch.chdir(tmp_path)  # the quick spec writes sweep_out/ under the working directory
    runs = [argv for argv in page_commands() if "--check" not in argv and "--report" not in argv]
    quick = [argv for argv in runs if argv[1].endswith("quick.yaml")]
    assert quick == [["sweep", "configs/sweeps/quick.yaml", "--workers", "2"]]
    for argv in runs:  # the others need the demo's backbone: their spec must load
        load_spec(ROOT / argv[1])
    assert main(["sweep", str(ROOT / quick[0][1]), *quick[0][2:]]) == 0
    out = tmp_path / "sweep_out" / "quick"
    table = (out / "table.csv").read_text()
    assert [line.split(",")[0] for line in table.splitlines()] == ["method", "lora", "frozen"]
    (report,) = [argv for argv in page_commands() if "--report" in argv]
    (out / "table.csv").unlink()
    assert main([*report[:-1], str(out)]) == 0
    assert (out / "table.csv").read_text() == table
