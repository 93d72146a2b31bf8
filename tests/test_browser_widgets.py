"""The widgets in a real browser: JupyterLab started here, headless Chromium driven by Selenium.

For notebooks 02 and 04 (student copies, from a student release written to a temporary folder so that JupyterLab's
autosave never touches the repository): open the notebook, run all cells (smoke + offline mode), move a slider,
and see the figure in the widget's output appear and then change when the slider moves again.

Needs Debian's ``chromium`` and ``chromium-driver`` (``make browser-deps`` installs them) and ``selenium``
(requirements-dev.txt); skipped, saying which is missing, without them. Run alone with ``make browser-test``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import release  # noqa: E402

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
#: notebook -> (description of the slider to move, the values to set)
SLIDERS = {"02_attention.ipynb": ("discard", ("0.5", "0.9")), "04_gradcam.ipynb": ("threshold", ("0.8", "0.2"))}
RUN_TIMEOUT = 600  # s for "run all cells" of one notebook in smoke mode
DRAW_TIMEOUT = 120  # s for a redraw after a slider moved


def _missing() -> str:
    missing = [name for name, path in (("chromium", CHROMIUM), ("chromium-driver", CHROMEDRIVER)) if not path]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip)")
    return ", ".join(missing)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, fake_data_dir: Path) -> Iterator[str]:
    """JupyterLab serving a student release; yields its base URL (with the token)."""
    if _missing():
        pytest.skip(f"the browser test needs {_missing()}: run `make browser-deps`")
    course = tmp_path_factory.mktemp("browser") / "course"
    release.write_release(course, ROOT, require_consistent=False)
    port, token = _free_port(), "xai-browser-test"
    env = {k: v for k, v in os.environ.items() if not k.startswith("XAI_") and k != "MPLBACKEND"}
    env.update(XAI_SMOKE="1", XAI_OFFLINE="1", XAI_DATA_DIR=str(fake_data_dir), PYTHONHASHSEED="0",
               JUPYTER_CONFIG_DIR=str(course.parent / "jupyter-config"))
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
           f"--ServerApp.root_dir={course}", f"--IdentityProvider.token={token}",
           "--LabApp.expose_app_in_browser=True", "--ServerApp.disable_check_xsrf=True"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log = (course.parent / "lab.log").open("w")
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=course)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5)
                break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    log_text = (course.parent / "lab.log").read_text()[-3000:]
                    raise RuntimeError("JupyterLab did not start:\n" + log_text) from None
                time.sleep(0.5)
        yield f"{url}/lab/tree/notebooks/{{name}}?token={token}&reset"
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture
def browser() -> Iterator:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


#: JavaScript against JupyterLab's application object (exposed by --LabApp.expose_app_in_browser)
JS_STATE = """
const app = window.jupyterapp;
const panel = app && app.shell.currentWidget;
if (!panel || !panel.content || !panel.sessionContext || !panel.sessionContext.session) return null;
const kernel = panel.sessionContext.session.kernel;
const cells = panel.content.widgets.filter(c => c.model.type === 'code');
return {kernel: kernel ? kernel.status : 'none', code: cells.length,
        done: cells.filter(c => c.model.executionCount !== null).length,
        running: document.querySelectorAll('.jp-InputPrompt').length ?
                 [...document.querySelectorAll('.jp-InputPrompt')].filter(p => p.textContent.includes('*')).length : 0,
        errors: cells.filter(c => c.model.outputs.toJSON().some(o => o.output_type === 'error'))
                     .map(c => c.model.outputs.toJSON().find(o => o.output_type === 'error').evalue)};
"""


def _wait(driver, condition, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _output_images(driver, slider) -> list[str]:
    """The ``src`` of every image in the widget Output next to the slider's box."""
    return driver.execute_script(
        """
        let box = arguments[0];
        while (box && !box.querySelector('.widget-output, .jupyter-widgets-output-area')) box = box.parentElement;
        if (!box) return [];
        return [...box.querySelectorAll('.widget-output img, .jupyter-widgets-output-area img')].map(i => i.src);
        """,
        slider,
    )


def _set_slider(driver, slider, value: str) -> None:
    """Type a value into the slider's readout (what a user can do too) and press Enter."""
    from selenium.webdriver.common.keys import Keys

    readout = slider.find_element("css selector", ".widget-readout")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", readout)
    readout.click()
    readout.send_keys(Keys.CONTROL, "a")
    readout.send_keys(value, Keys.ENTER)


@pytest.mark.parametrize("name", list(SLIDERS))
def test_slider_redraws_the_figure(lab: str, browser, name: str) -> None:
    browser.get(lab.format(name=name))
    state = _wait(browser, lambda: (s := browser.execute_script(JS_STATE)) and s["kernel"] == "idle" and s,
                  180, "the notebook and an idle kernel")
    browser.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells');")
    start = time.time()

    def finished():
        s = browser.execute_script(JS_STATE)
        return s and s["done"] == s["code"] and s["running"] == 0 and s["kernel"] == "idle" and s

    state = _wait(browser, finished, RUN_TIMEOUT, f"all {state['code']} code cells of {name} to run")
    print(f"{name}: {state['code']} code cells ran in {time.time() - start:.0f} s")
    assert not state["errors"], f"{name}: cells raised {state['errors']}"
    description, values = SLIDERS[name]
    sliders = [s for s in browser.find_elements("css selector", ".widget-slider, .widget-hslider")
               if description in s.text]
    assert sliders, f"{name}: no slider labelled {description!r} was rendered"
    slider = sliders[0]
    assert _output_images(browser, slider) == [], "the widget output is drawn only when a control moves"
    _set_slider(browser, slider, values[0])
    first = _wait(browser, lambda: _output_images(browser, slider), DRAW_TIMEOUT, "the figure after the first move")
    _set_slider(browser, slider, values[1])
    second = _wait(browser, lambda: (imgs := _output_images(browser, slider)) and imgs != first and imgs,
                   DRAW_TIMEOUT, "the figure to change after the second move")
    assert len(second) == 1 and second != first
