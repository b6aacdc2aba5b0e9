"""`.ci/run` and the browser test's guard: on CI (``CI`` set) a browser that cannot be installed is a
failure, never a silent skip; elsewhere the run goes on and the browser test skips with its reason."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from _browser_env import require_browser

ROOT = Path(__file__).resolve().parents[2]


def _fake_bin(tmp_path: Path) -> Path:
    """A PATH holding only what .ci/run calls: apt-get fails (no sources), make records that it ran."""
    fake = tmp_path / "bin"
    fake.mkdir()
    for tool in ("dirname", "id"):
        (fake / tool).symlink_to(shutil.which(tool))
    (fake / "apt-get").write_text("#!/bin/sh\necho 'E: Unable to locate package chromium' >&2\nexit 100\n")
    (fake / "make").write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path / 'make_ran'}\n")
    for script in ("apt-get", "make"):
        (fake / script).chmod(0o755)
    return fake


def _run(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess:
    env = {"PATH": str(_fake_bin(tmp_path)), "HOME": str(tmp_path)}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(["/bin/bash", str(ROOT / ".ci" / "run")], env=env, capture_output=True, text=True,
                          timeout=60)


def test_ci_run_fails_on_ci_when_chromium_cannot_be_installed(tmp_path):
    proc = _run(tmp_path, "true")
    assert proc.returncode == 1, proc.stderr
    assert "could not install chromium" in proc.stderr and "on CI the browser test must run" in proc.stderr
    assert not (tmp_path / "make_ran").exists()  # the tests never started


def test_ci_run_goes_on_elsewhere_and_says_the_browser_test_will_skip(tmp_path):
    proc = _run(tmp_path, None)
    assert proc.returncode == 0, proc.stderr
    assert "the browser test will skip" in proc.stderr
    assert (tmp_path / "make_ran").read_text().strip() == "test"


@pytest.mark.parametrize("ci,outcome", [("true", pytest.fail.Exception), (None, pytest.skip.Exception)])
def test_browser_test_fails_on_ci_and_skips_elsewhere_without_chromium(monkeypatch, ci, outcome):
    monkeypatch.setattr(shutil, "which", lambda name: None)  # no chromium, no chromedriver
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="chromium.*chromedriver"):
        require_browser()
