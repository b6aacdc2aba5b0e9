"""What the browser test needs from the machine, and what happens without it: a skip with the reason on
a developer's machine, a failure on CI (``CI`` set, as CI services and `.ci/run` do), where the browser
is installed on purpose and its absence means the test would silently not run."""

from __future__ import annotations

import importlib.util
import os
import shutil

import pytest

__all__ = ["on_ci", "browser_missing", "require_browser"]


def on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes", "on"}


def browser_missing() -> list[str]:
    """The pieces the browser test lacks here: Chromium, its driver, Gradio, Selenium."""
    missing = []
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        missing.append("chromium (Debian: apt-get install chromium)")
    if not shutil.which("chromedriver"):
        missing.append("chromedriver (Debian: apt-get install chromium-driver)")
    if importlib.util.find_spec("gradio") is None:
        missing.append("gradio (the optional 'app' extra: pip install 'umgkit[app]')")
    if importlib.util.find_spec("selenium") is None:
        missing.append("selenium (dev extra)")
    return missing


def require_browser() -> None:
    """Skip the calling test module (fail it on CI) when anything the browser test needs is missing."""
    missing = browser_missing()
    if not missing:
        return
    reason = "the browser test needs " + "; ".join(missing)
    if on_ci():
        pytest.fail(f"{reason}. CI must run it: .ci/run installs Chromium and its driver.", pytrace=False)
    pytest.skip(reason + " (.ci/run installs Chromium and its driver)", allow_module_level=True)
