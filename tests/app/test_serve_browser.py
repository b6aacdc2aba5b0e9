"""`umgkit serve` in a real headless Chromium (Debian's chromium + chromedriver, driven by Selenium; no
browser is downloaded). Upload a val image, type its class names, predict: the overlay the page shows and
its per-class areas equal `umgkit predict` on the same image and classes. Bad inputs show one message
and the server keeps serving. Skips with a reason where Chromium or Gradio is missing, and fails instead
on CI (``CI`` set), where a skip would hide that the browser test never ran."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from _browser_env import require_browser  # tests/app is on the path (rootdir-relative test folder)
from PIL import Image

from umgkit.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.slow
require_browser()  # a skip with the reason here; a failure on CI, where the browser must be there
from selenium import webdriver  # noqa: E402  (present: require_browser checked it)

SHOTS = os.environ.get("UMGKIT_SCREENSHOT_DIR")  # set to keep a screenshot of the page (docs/)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(semantic_run, tmp_path_factory):
    run, images, names = semantic_run
    port = _free_port()
    log = tmp_path_factory.mktemp("serve_log") / "server.log"
    start = time.perf_counter()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", XDG_CACHE_HOME=str(log.parent / "cache"))
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "umgkit.cli", "serve", str(run), "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(url, timeout=1)
                break
            except OSError:
                assert proc.poll() is None, log.read_text()[-3000:]
                time.sleep(0.5)
        else:
            pytest.fail("umgkit serve did not answer in 120 s:\n" + log.read_text()[-3000:])
        print(f"\n[serve] startup to first answer: {time.perf_counter() - start:.1f} s")
        yield url, proc, log
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--disable-quic", "--window-size=1400,1100"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _wait(predicate, timeout=60.0, what="the page"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what}")


class Page:
    """The page's fields, found by their element ids (``umg-*``, set in umgkit/app/page.py)."""

    def __init__(self, driver, url):
        from selenium.webdriver.common.by import By

        self.driver, self.by = driver, By
        driver.get(url)
        _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#umg-run"), what="the Predict button")

    def find(self, css):
        return self.driver.find_element(self.by.CSS_SELECTOR, css)

    def upload(self, path):
        clear = self.driver.find_elements(self.by.CSS_SELECTOR, "#umg-image button[aria-label='Clear']")
        if clear:
            clear[0].click()
        self.find("#umg-image input[type=file]").send_keys(str(path))

    def classes(self, text):
        box = self.find("#umg-classes textarea")
        box.clear()
        box.send_keys(text)

    def message(self):
        """The message's prose only (not the progress timer Gradio overlays while a request runs)."""
        return self.driver.execute_script("""
            const box = document.querySelector('#umg-message .prose')
                || document.querySelector('#umg-message');
            return box ? box.textContent.trim() : '';""")

    def busy(self):
        return bool(self.driver.find_elements(self.by.CSS_SELECTOR,
                                              "[data-testid=status-tracker]:not(.hide)"))

    def predict(self, before):
        """Press Predict; wait until no request runs and the message differs from ``before``."""
        self.find("#umg-run").click()
        return _wait(lambda: not self.busy() and (m := self.message()) != before and m, what="the answer")

    def overlay(self):
        imgs = self.driver.find_elements(self.by.CSS_SELECTOR, "#umg-overlay img")
        return imgs[0].get_attribute("src") if imgs else None

    def table(self):
        """Body rows of the table as cell texts (Gradio's data grid: role=row / role=gridcell)."""
        return self.driver.execute_script("""
            const rows = document.querySelectorAll('#umg-table [role=row]');
            return Array.from(rows)
                .map(r => Array.from(r.querySelectorAll('[role=gridcell]')).map(c => c.textContent.trim()))
                .filter(cells => cells.length > 0 && cells.every(t => t.length > 0));""")


def test_page_prediction_equals_umgkit_predict_and_bad_inputs_show_a_message(server, browser, semantic_run,
                                                                             tmp_path):
    url, proc, log = server
    run, images, names = semantic_run
    page = Page(browser, url)
    image, classes = images[0], ", ".join(names)

    page.upload(image)
    page.classes(classes)
    started = time.perf_counter()
    message = page.predict(before=page.message())
    print(f"[serve] one prediction in the browser: {time.perf_counter() - started:.1f} s ({message})")
    assert message.startswith("semantic: 13 class names")
    src = _wait(page.overlay, what="the overlay")
    shown = np.asarray(Image.open(BytesIO(urllib.request.urlopen(src, timeout=10).read())).convert("RGB"))
    if SHOTS:
        browser.save_screenshot(str(Path(SHOTS) / "serve.png"))

    assert main(["predict", str(run), str(image), "--out", str(tmp_path / "cli")]) == 0
    want = np.asarray(Image.open(tmp_path / "cli" / "overlays" / f"{image.stem}.png").convert("RGB"))
    assert shown.shape == want.shape and np.array_equal(shown, want)
    areas = json.loads((tmp_path / "cli" / "predictions.json").read_text())["images"][0]["areas"]
    table = {name: float(share) for name, share in _wait(page.table, what="the table")}
    assert table == pytest.approx(areas, abs=1e-6) and len(table) == len(areas)

    # bad inputs: one message each, no stack trace, and the server answers the next request
    page.classes(" , ")
    assert page.predict(before=message).startswith("No class names")
    page.classes("cat, dog")
    assert "closed-vocabulary classifier over 13 classes" in page.predict(before="No class names")
    bad = tmp_path / "broken.png"
    bad.write_bytes(image.read_bytes()[:60])  # a truncated PNG
    page.upload(bad)
    page.classes(classes)
    answer = page.predict(before=page.message())
    print(f"[serve] truncated upload: {answer}")
    assert answer.startswith("Cannot read the uploaded image broken.png: "), answer
    page.upload(images[1])
    assert page.predict(before=answer).startswith("semantic: 13 class names")
    assert proc.poll() is None and "Traceback" not in log.read_text()
