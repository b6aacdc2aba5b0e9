"""`umgkit bench` on a folder of tiny fake benchmarks: files written, failures isolated, exit status."""

import json
import textwrap

from umgkit.bench import BenchSpec, exit_status, parse_json_output, run_bench
from umgkit.cli import main


def _script(folder, name, body):
    (folder / f"{name}.py").write_text(textwrap.dedent(body))


def _fake_benchmarks(tmp_path):
    folder = tmp_path / "repo" / "benchmarks"
    folder.mkdir(parents=True)
    _script(folder, "good", """
        import json, sys
        print("progress goes to stderr", file=sys.stderr)
        print(json.dumps({"benchmark": "good", "figures": [
            {"figure": "fast path / slow path", "ratio": 1.5, "target": ">= 0.95", "detail": "12 img/s"},
            {"figure": "memory / full", "ratio": 1.2, "target": "<= 1.0"}]}, indent=2))
    """)
    _script(folder, "legacy", """
        import json
        print("warming up")
        print(json.dumps({"speedup": 3.0, "epoch_s": 0.5, "overhead": 1.05,
                          "targets": {"overhead": "<= 1.1"}}))
    """)
    _script(folder, "broken", """
        raise RuntimeError("out of memory in layer 3")
    """)
    _script(folder, "hangs", """
        import time
        time.sleep(60)
    """)
    _script(folder, "_helpers", "raise SystemExit('private modules are not benchmarks')\n")
    return folder


def test_runner_writes_json_and_summary_and_isolates_failures(tmp_path):
    folder = _fake_benchmarks(tmp_path)
    out = tmp_path / "out"
    report = run_bench(out, benchmarks=folder, specs={"hangs": BenchSpec(timeout_s=2)}, gpu=False)
    saved = json.loads((out / "bench.json").read_text())
    assert saved["benchmarks"].keys() == {"broken", "good", "hangs", "legacy"}
    assert {n: b["status"] for n, b in saved["benchmarks"].items()} == {
        "broken": "failed", "good": "ok", "hangs": "timeout", "legacy": "ok"}
    assert "out of memory in layer 3" in saved["benchmarks"]["broken"]["error"]
    assert [f["passed"] for f in saved["benchmarks"]["good"]["figures"]] == [True, False]
    assert saved["benchmarks"]["legacy"]["figures"] == [  # no "figures": named targets, then *speedup*
        {"figure": "overhead", "ratio": 1.05, "target": "<= 1.1", "passed": True},
        {"figure": "speedup", "ratio": 3.0, "target": None, "passed": None}]
    md = (out / "bench.md").read_text()
    assert "| good | fast path / slow path | 1.500 | &gt;= 0.95 | pass |" in md
    assert "| good | memory / full | 1.200 | &lt;= 1.0 | below target |" in md
    assert "| broken | (did not run to the end) | | | failed |" in md
    assert "12 img/s" in md and "out of memory in layer 3" in md
    assert exit_status(report) == 1


def test_cli_exit_status_and_strict_targets(tmp_path, capsys):
    folder = _fake_benchmarks(tmp_path)
    for name in ("broken", "hangs"):
        (folder / f"{name}.py").unlink()
    out = tmp_path / "cli"
    assert main(["bench", "--out", str(out), "--benchmarks", str(folder)]) == 0
    assert "| legacy | speedup | 3.000 |" in capsys.readouterr().out
    assert main(["bench", "--out", str(out), "--benchmarks", str(folder), "--strict"]) == 1  # 1.2 > 1.0
    assert main(["bench", "--out", str(out), "--benchmarks", str(folder), "--only", "legacy",
                 "--strict"]) == 0


def test_parse_json_output_takes_the_last_object():
    assert parse_json_output('noise\n{"a": 1}\n{\n  "b": 2\n}\n') == {"b": 2}
