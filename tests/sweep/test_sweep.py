"""umgkit sweep: spec errors, load-checks of the shipped specs, a 2-worker sweep, kill -9 + --resume, two
processes on one storage, a failing trial, and the report rebuilt from the folder."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from umgkit.cli import main
from umgkit.data.synth import generate_world

pytest.importorskip("optuna")

ROOT = Path(__file__).resolve().parents[2]
CELL = "demo_classification"  # no axes: the method is the config's stem, the dataset its folder
SHIPPED = sorted((ROOT / "configs" / "sweeps").glob("*.yaml"))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    generate_world(out, num=40, size=32, seed=0, progress=False)
    return out


def write_spec(folder: Path, world: Path, body: str) -> Path:
    """A spec over the demo classification config shrunk to 2 steps of umg:tiny at 32 px."""
    tiny = [f"data.synthetic.out={world}", f"data.root={world / 'imagefolder'}", "model.backbone=umg:tiny",
            "data.image_size=32", "data.batch_size=8", "data.eval_batch_size=16", "data.limit=16",
            "train.max_steps=2", "train.warmup_steps=0", "train.log_every=1"]
    spec = folder / "spec.yaml"
    spec.write_text(f"configs: [{ROOT / 'configs' / 'demo' / 'classification.yaml'}]\n"
                    f"overrides: {json.dumps(tiny)}\nout: {folder / 'out'}\npruner: none\n"
                    + textwrap.dedent(body), encoding="utf-8")
    return spec


def trials_of(out: Path) -> dict[str, list]:
    from umgkit.sweep.record import load_sweep_record
    from umgkit.sweep.study import open_storage, open_study

    spec, url = load_sweep_record(out)
    storage = open_storage(url)
    return {c.name: open_study(storage, spec, c).get_trials() for c in spec.cells()}


def states(trials) -> list[str]:
    return sorted(t.state.name for t in trials)


def sweep_cli(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "umgkit.cli", "sweep", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("body, key", [
    ("configs: []\n", "configs"),
    ("configs: [missing.yaml]\n", "configs"),
    ("configs: [c.yaml]\ntrials: 0\n", "trials"),
    ("configs: [c.yaml]\nsampler: bayes\n", "sampler"),
    ("configs: [c.yaml]\naxes: {model.adapter: [lora]}\nsearch: {dora: {train.lr: [1]}}\n", "search"),
    ("configs: [c.yaml]\nsearch: {default: {train.lr: {low: 1, high: 0}}}\n", "search.default.train.lr"),
    ("configs: [c.yaml]\nseeds: 3\n", "seeds"),
    ("configs: [c.yaml]\nworkers: 3\n", "workers"),
])
def test_spec_errors_exit_2_naming_the_key(tmp_path, capsys, body, key):
    (tmp_path / "c.yaml").write_text("task: classification\n", encoding="utf-8")
    spec = tmp_path / "spec.yaml"
    spec.write_text(body, encoding="utf-8")
    assert main(["sweep", str(spec), "--check"]) == 2
    err = capsys.readouterr().err
    assert str(spec) in err and key in err
    assert len(err.strip().splitlines()) == 1


def test_a_bad_config_value_names_the_cell(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("task: classification\n", encoding="utf-8")
    spec = tmp_path / "spec.yaml"
    spec.write_text("configs: [c.yaml]\naxes: {train.lr: [-1.0]}\n", encoding="utf-8")
    assert main(["sweep", str(spec), "--check"]) == 2
    err = capsys.readouterr().err
    assert "cell c-1.0 " in err and "'train.lr' has value -1.0" in err


def test_without_optuna_one_error_with_the_install_hint(tmp_path, monkeypatch, capsys):
    (tmp_path / "c.yaml").write_text("task: classification\n", encoding="utf-8")
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"configs: [c.yaml]\nout: {tmp_path / 'out'}\n", encoding="utf-8")
    monkeypatch.setitem(sys.modules, "optuna", None)  # as if not installed
    assert main(["sweep", str(spec)]) == 2
    err = capsys.readouterr().err
    assert err == "umgkit sweep: error: umgkit sweep needs Optuna: pip install 'umgkit[sweep]'\n"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("spec", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_specs_load_check(spec, capsys):
    from umgkit.sweep import load_spec

    assert main(["sweep", str(spec), "--check"]) == 0
    cells = len(load_spec(spec).cells())
    assert f"{cells} cells load" in capsys.readouterr().out
    expected = {"pet_vs_full": 5 * 8, "paper_vtab": 19 * 8, "paper_ade20k": 4}
    if spec.stem in expected:
        assert cells == expected[spec.stem]


def test_two_processes_share_one_budget(tmp_path):
    """Two processes ask trials of one study on one journal file: 20 trials, numbers 0..19, no repeat."""
    code = textwrap.dedent(f"""
        import json, sys
        from pathlib import Path
        from umgkit.sweep.spec import load_spec
        from umgkit.sweep.study import ask_within_budget, open_storage, open_study
        spec = load_spec({str(tmp_path / 'spec.yaml')!r})
        cell = spec.cells()[0]
        storage = open_storage({str(tmp_path / 'optuna.journal')!r})
        study = open_study(storage, spec, cell, seed=int(sys.argv[1]))
        mine = []
        while (trial := ask_within_budget(study, 20, Path({str(tmp_path / '.lock')!r}))) is not None:
            study.tell(trial, trial.suggest_float("train.lr", 1e-4, 1e-2, log=True))
            mine.append(trial.number)
        print(json.dumps(mine))
    """)
    (tmp_path / "c.yaml").write_text("task: classification\n", encoding="utf-8")
    (tmp_path / "spec.yaml").write_text("configs: [c.yaml]\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(i)], stdout=subprocess.PIPE, text=True,
                              env=env) for i in range(2)]
    numbers = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(numbers[0] + numbers[1]) == list(range(20))
    assert numbers[0] and numbers[1]  # both took part


@pytest.mark.slow
def test_two_worker_sweep_of_six_trials_and_report(tmp_path, world):
    spec = write_spec(tmp_path, world, """
        search: {default: {train.lr: {low: 1.0e-4, high: 1.0e-2, log: true}}}
        trials: 6
        seeds: [0, 1]
    """)
    result = sweep_cli(spec, "--workers", "2")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    (trials,) = trials_of(out).values()
    assert states(trials) == ["COMPLETE"] * 6
    assert sorted(t.number for t in trials) == list(range(6))
    assert sorted(p.name for p in (out / "trials" / CELL).iterdir()) == [str(i) for i in range(6)]
    for t in trials:
        record = json.loads((out / t.user_attrs["folder"] / "trial.json").read_text())
        assert record["metrics"]["top1"] == t.value
        assert (out / t.user_attrs["folder"] / "model" / "model.json").is_file()  # an ordinary run folder
    finals = sorted((out / "final" / CELL).glob("seed*/trial.json"))
    assert [p.parent.name for p in finals] == ["seed0", "seed1"]
    best = json.loads((out / "final" / CELL / "best.json").read_text())
    assert best["value"] == max(t.value for t in trials)
    assert best["params"] == next(t.params for t in trials if t.number == best["trial"])
    rows = (out / "table.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith("classification,demo,,top1,")
    assert (out / "pareto.png").stat().st_size > 1000 and (out / "table.md").is_file()
    # the report rebuilds identically from the folder alone
    table = (out / "table.csv").read_text()
    (out / "table.csv").unlink()
    assert main(["sweep", "--report", str(out)]) == 0
    assert (out / "table.csv").read_text() == table
    # an existing sweep folder needs --resume
    again = sweep_cli(spec)
    assert again.returncode == 2 and "--resume" in again.stderr


@pytest.mark.slow
def test_kill_9_then_resume_reruns_no_finished_trial(tmp_path, world):
    spec = write_spec(tmp_path, world, """
        search: {default: {train.lr: {low: 1.0e-4, high: 1.0e-2, log: true}}}
        trials: 4
        seeds: [0]
    """)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "umgkit.cli", "sweep", str(spec)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    done = []
    while time.monotonic() < deadline:
        time.sleep(1.0)
        if (out / "sweep.json").is_file():
            done = [t for t in next(iter(trials_of(out).values())) if t.state.name == "COMPLETE"]
            if len(done) >= 2:
                break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(done) >= 2
    before = {t.number: (out / t.user_attrs["folder"] / "trial.json").stat() for t in done}
    result = sweep_cli(spec, "--resume")
    assert result.returncode == 0, result.stderr
    (trials,) = trials_of(out).values()
    counted = [t for t in trials if not t.user_attrs.get("interrupted")]
    assert states(counted) == ["COMPLETE"] * 4
    for number, stat in before.items():  # finished trials were not rerun
        again = (out / "trials" / CELL / str(number) / "trial.json").stat()
        assert (again.st_ino, again.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)
    assert (out / "final" / CELL / "seed0" / "trial.json").is_file()


@pytest.mark.slow
def test_a_failing_trial_is_recorded_and_the_sweep_goes_on(tmp_path, world):
    spec = write_spec(tmp_path, world, """
        search: {default: {train.lr: [1.0e-3, -1.0]}}
        sampler: grid
        seeds: [0]
    """)
    result = sweep_cli(spec)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    (trials,) = trials_of(out).values()
    assert states(trials) == ["COMPLETE", "FAIL"]
    (failed,) = [t for t in trials if t.state.name == "FAIL"]
    assert failed.params == {"train.lr": -1.0} and failed.user_attrs["exit_code"] == 2
    assert "train.lr" in failed.user_attrs["error"]
    assert "train.lr" in (out / failed.user_attrs["folder"] / "error.txt").read_text()
    assert len((out / "table.csv").read_text().splitlines()) == 2
