"""In a real browser, a student's JupyterLab: nbgrader's Validate button tells the truth, and the
instructor tools are absent.

JupyterLab starts the way ``make lab`` starts it (``flowlab.lab``: the student configuration on
``JUPYTER_CONFIG_PATH``), on 127.0.0.1 with a token, over a temporary folder holding notebook 01
twice: the student release as it is (nothing written) and the instructor's source (the solution).
Headless Chromium (Debian's package, driven by Playwright) opens each, presses Validate in the
notebook toolbar and reads the dialog. Nothing is set for the test: nbgrader's Validate sets
``NBGRADER_EXECUTION``, which ``grading_mode()`` honours, so the notebook's slow exploration is
skipped as in grading; the public tests and grade cells run as they do for a student. The notebooks find the public
test data through the installed flowlab. Screenshots are left in pytest's ``tmp_path``.

One more notebook, made by the test, loads MNIST in a kernel without network: the student sees one
quiet line about the bundled subset and nothing on stderr (which JupyterLab paints pink).
"""
from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from flowlab import lab

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "01_flow_matching"
FUNCTIONS = ("interpolate", "flow_matching_loss")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
START_SECONDS = 60
VALIDATE_MS = 180_000
INSTRUCTOR_UI = {   # what nbgrader's instructor plugins add to JupyterLab
    "the Nbgrader menu": ".lm-MenuBar-item:has-text('Nbgrader')",
    "the Create Assignment panel": "#nbgrader-create_assignemnt",   # sic: nbgrader's id
    "the Create Assignment tab": "[title='Nbgrader Create Assignment']",
}

if CHROMIUM is None:
    pytest.skip("no chromium on this machine (Debian: apt-get install chromium)", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_up(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"JupyterLab exited ({server.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"JupyterLab did not answer within {START_SECONDS} s:\n{log.read_text()[-3000:]}")


def start_lab(folder: Path, student: bool):
    """Start JupyterLab over ``folder/notebooks`` (as ``make lab`` does when ``student``, else as a
    plain ``jupyter lab``); returns ``(process, base URL, token)`` once it answers."""
    notebooks, state = folder / "notebooks", folder / "state"
    port, token = free_port(), secrets.token_hex(16)
    base = {key: value for key, value in os.environ.items() if not key.startswith(("JUPYTER", "FLOWLAB"))}
    env = {**base, "JUPYTER_CONFIG_DIR": str(state / "config"),
           "JUPYTER_DATA_DIR": str(state / "data"), "JUPYTER_RUNTIME_DIR": str(state / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(state / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(state / "workspaces")}
    arguments = [f"--ServerApp.root_dir={notebooks}", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
                 f"--IdentityProvider.token={token}", "--ServerApp.open_browser=False"]
    line = lab.command(arguments)
    log = folder / "jupyterlab.log"
    with log.open("w") as output:
        server = subprocess.Popen(line, env=lab.environment(env) if student else env, stdout=output,
                                  stderr=subprocess.STDOUT, cwd=notebooks)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/api/status?token={token}", server, log)
    except BaseException:
        stop(server)
        raise
    return server, url, token


def stop(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


@pytest.fixture(scope="module")
def student_lab(tmp_path_factory):
    """``(base URL, token)`` of a student JupyterLab over a folder with the release and the solution."""
    folder = tmp_path_factory.mktemp("lab")
    (folder / "notebooks").mkdir()
    shutil.copy2(ROOT / "notebooks" / f"{NOTEBOOK}.ipynb", folder / "notebooks" / "release.ipynb")
    shutil.copy2(ROOT / "autograder" / "source" / NOTEBOOK / f"{NOTEBOOK}.ipynb",
                 folder / "notebooks" / "solution.ipynb")
    server, url, token = start_lab(folder, student=True)
    try:
        yield url, token
    finally:
        stop(server)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 900})
        try:
            yield context
        finally:
            context.close()


def open_notebook(browser, lab_url: tuple[str, str], name: str):
    """A new tab with only notebook ``name`` open (``reset``: no tab restored from an earlier visit)."""
    url, token = lab_url
    page = browser.new_page()
    page.goto(f"{url}/lab/tree/{name}?reset&token={token}")
    page.locator(".jp-NotebookPanel-toolbar:visible").wait_for(timeout=60_000)
    page.locator(".jp-Notebook .jp-Cell:visible").first.wait_for(timeout=60_000)
    return page


def open_lab(browser, lab_url: tuple[str, str]):
    """A new tab with JupyterLab and no document, once its menu bar is complete."""
    url, token = lab_url
    page = browser.new_page()
    page.goto(f"{url}/lab?reset&token={token}")
    page.locator(".lm-MenuBar-item:has-text('Help')").wait_for(timeout=60_000)
    page.locator(".jp-Launcher:visible").wait_for(timeout=60_000)
    return page


def instructor_tools(page) -> list[str]:
    return [what for what, selector in INSTRUCTOR_UI.items() if page.locator(selector).count()]


def validate(page, screenshot: Path) -> str:
    """Press Validate in the notebook toolbar; the dialog's text (a screenshot of it in ``screenshot``)."""
    button = page.locator(".jp-NotebookPanel-toolbar:visible").get_by_text("Validate", exact=True)
    button.click()
    message = page.locator("#validation-message")
    message.wait_for(timeout=VALIDATE_MS)
    page.screenshot(path=str(screenshot))
    return message.inner_text()


def test_validate_names_every_unwritten_function_of_an_untouched_release(browser, student_lab, tmp_path):
    page = open_notebook(browser, student_lab, "release.ipynb")
    text = validate(page, tmp_path / "release-validate.png")
    assert "Success" not in text, text
    for function in FUNCTIONS:
        assert f"{function}: not written yet (raises NotImplementedError)" in text, text
    page.close()


def test_validate_says_success_on_the_solution(browser, student_lab, tmp_path):
    page = open_notebook(browser, student_lab, "solution.ipynb")
    text = validate(page, tmp_path / "solution-validate.png")
    assert "Success! Your notebook passes all the tests." in text and "failed" not in text, text
    page.close()


def test_the_instructor_tools_are_absent(browser, student_lab, tmp_path):
    page = open_lab(browser, student_lab)
    page.screenshot(path=str(tmp_path / "student-lab.png"))
    assert not instructor_tools(page), f"a student's JupyterLab shows {instructor_tools(page)}"
    url, token = student_lab
    assert page.request.get(f"{url}/formgrader?token={token}").status == 404, "the formgrader is served"
    page.close()


def test_a_plain_jupyter_lab_has_the_instructor_tools(browser, tmp_path):
    """The control: the same look-ups find nbgrader's instructor tools where they are installed."""
    (tmp_path / "notebooks").mkdir()
    server, url, token = start_lab(tmp_path, student=False)
    try:
        page = open_lab(browser, (url, token))
        page.screenshot(path=str(tmp_path / "instructor-lab.png"))
        assert instructor_tools(page) == list(INSTRUCTOR_UI)
        assert page.request.get(f"{url}/formgrader?token={token}").status == 200
        page.close()
    finally:
        stop(server)


def test_an_offline_mnist_cell_shows_no_error_output(browser, student_lab, tmp_path):
    """Offline, loading MNIST falls back to the bundled subset with one quiet line: nothing on stderr,
    which JupyterLab paints pink and a student reads as a failure. The first cell makes the kernel
    offline (an empty data folder, a mirror on a closed port) as a laptop without network is."""
    import json

    import nbformat

    url, token = student_lab
    closed = free_port()   # nothing listens there
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(f"import os\nos.environ['FLOWLAB_DATA'] = {str(tmp_path / 'empty')!r}\n"
                                  f"os.environ['FLOWLAB_MNIST_MIRROR'] = 'http://127.0.0.1:{closed}/mnist/'"),
        nbformat.v4.new_code_cell("from flowlab import mnist\ntest = mnist.load('test')\nprint(len(test), 'digits')"),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}})
    saved = browser.request.put(f"{url}/api/contents/offline.ipynb?token={token}",
                                data={"type": "notebook", "content": json.loads(nbformat.writes(notebook))})
    assert saved.ok, saved.text()
    page = open_notebook(browser, student_lab, "offline.ipynb")
    toolbar = page.locator(".jp-NotebookPanel-toolbar:visible")
    toolbar.get_by_text("Python 3 (ipykernel)").wait_for(timeout=60_000)   # the kernel is chosen: no dialog
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    printed = page.get_by_text("1000 digits")
    for attempt in range(4):    # once, on a busy CI, the first Run All ran nothing: ask again (the cells can rerun)
        page.locator(".lm-MenuBar-item:has-text('Run')").click()
        page.locator(".lm-Menu-item:has-text('Run All Cells')").first.click()
        try:
            printed.wait_for(timeout=VALIDATE_MS // 4)   # a kernel start on a busy machine
            break
        except PlaywrightTimeout:
            if attempt == 3:
                raise
    page.screenshot(path=str(tmp_path / "offline-mnist.png"))
    outputs = page.locator(".jp-OutputArea-output").all_inner_texts()
    assert any("using the bundled subset" in text for text in outputs), outputs
    assert page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").count() == 0, outputs
    page.close()
