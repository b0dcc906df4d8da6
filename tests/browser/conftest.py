"""Real-browser fixtures: the app served by ``streamlit run`` on a free
127.0.0.1 port, driven by Playwright in the system Chromium.

Fixtures (reuse them in any ``tests/browser/test_*.py``; mark tests
``@pytest.mark.browser``, which this file also adds to every test here):

- ``app_server`` (session): the running app. A ``str`` URL such as
  ``http://127.0.0.1:41873`` with ``.runs_dir`` (its ``AMLKD_RUNS_DIR``, a tmp
  dir), ``.pid`` and ``.read_log()``. Headless, no usage stats, no file
  watcher, torch on one thread.
- ``browser`` (session): a Playwright Chromium ``Browser``.
- ``app_page`` (function): a fresh ``Page`` at the app's start page, already
  connected and idle, with every request that leaves 127.0.0.1 aborted; the
  aborted URLs collect in ``app_page.blocked`` (assert it is empty).

``AMLKD_REPEAT=N`` runs every test here N times in one session (one server, one
browser), e.g. to count how often an intermittent failure shows.

Helpers: ``wait_for_app(page)``, ``goto(page, base_url, url_path)``,
``offline_page(browser, width, height)``, ``settle(page)``, ``assert_no_exception(page)``.

Everything skips cleanly when Playwright or Chromium is missing
(``apt-get install -y chromium``; no ``playwright install`` needed).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
STREAMLIT_FLAGS = ("--server.headless", "true", "--browser.gatherUsageStats", "false",
                   "--server.showEmailPrompt", "false", "--server.fileWatcherType", "none",
                   "--server.runOnSave", "false")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")
APP_IDLE = ('[data-testid="stApp"][data-test-connection-state="CONNECTED"]'
            '[data-test-script-state="notRunning"]')
LOCAL = re.compile(r"^https?://(?!(?:127\.0\.0\.1|localhost|\[::1\])(?:[:/?#]|$))")


REPEAT_ENV = "AMLKD_REPEAT"  # run every browser test this many times in one session (flake hunting)


def pytest_generate_tests(metafunc):
    times = int(os.environ.get(REPEAT_ENV, "1") or 1)
    if times > 1 and Path(str(metafunc.definition.fspath)).parent == Path(__file__).parent:
        metafunc.fixturenames.append("repeat_number")
        metafunc.parametrize("repeat_number", range(1, times + 1), ids=lambda n: f"repeat{n}")


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).parent == here:
            item.add_marker(pytest.mark.browser)


# ---------------------------------------------------------------- server
class AppServer(str):
    """The base URL plus the server process and its runs folder."""

    def __new__(cls, url: str, process: subprocess.Popen, log_path: Path, runs_dir: Path):
        self = super().__new__(cls, url)
        self.process, self.pid, self.log_path, self.runs_dir = process, process.pid, log_path, runs_dir
        return self

    def read_log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/_stcore/health", timeout=1.0) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, OSError):
        return False


def _stop(process: subprocess.Popen, grace: float = 10.0) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # the server's own session: it started nothing else of ours


@contextlib.contextmanager
def serve_app(runs_dir: Path, env: dict | None = None, startup_timeout: float = 90.0):
    """``streamlit run app/launch.py`` (as ``make run``) on a free local port; yields an :class:`AppServer`."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "AMLKD_RUNS_DIR": str(runs_dir),
                "AMLKD_TORCH_THREADS": "1", **(env or {})}
    last_log = ""
    for _ in range(3):  # a port can be taken between choosing and binding it
        port = _free_port()
        url = f"http://{HOST}:{port}"
        fd, log_name = tempfile.mkstemp(prefix=f"amlkd-streamlit-{port}-", suffix=".log")
        log_path = Path(log_name)
        command = [sys.executable, "-m", "streamlit", "run", str(REPO / "app" / "launch.py"),
                   "--server.address", HOST, "--server.port", str(port), *STREAMLIT_FLAGS]
        with os.fdopen(fd, "wb") as log:
            process = subprocess.Popen(command, cwd=REPO, env=full_env, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + startup_timeout
        while time.monotonic() < deadline and process.poll() is None and not _healthy(url):
            time.sleep(0.2)
        if process.poll() is None and _healthy(url):
            server = AppServer(url, process, log_path, runs_dir)
            try:
                yield server
            finally:
                _stop(process)
                log_path.unlink(missing_ok=True)
            return
        _stop(process)
        last_log = log_path.read_text(errors="replace")[-4000:]
        log_path.unlink(missing_ok=True)
        if not re.search(r"Port \d+ is (?:not available|already in use)", last_log):
            break
    raise RuntimeError(f"streamlit did not start:\n{last_log}")


# ---------------------------------------------------------------- browser
def find_chromium() -> str | None:
    """``$CHROMIUM_PATH``, a chromium on ``PATH``, or ``/usr/bin/chromium``; ``None`` if none."""
    env_path = os.environ.get("CHROMIUM_PATH")
    if env_path and os.access(env_path, os.X_OK):
        return env_path
    for name in ("chromium", "chromium-browser", "google-chrome-stable", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


def chromium_launch_args() -> dict:
    """Keyword arguments of ``playwright.chromium.launch`` for the system Chromium."""
    return {"executable_path": find_chromium(), "args": list(CHROMIUM_FLAGS), "headless": True}


def wait_for_app(page, timeout_ms: float = 60_000) -> None:
    """Wait until the app is connected and no script run is in progress."""
    page.wait_for_selector(APP_IDLE, state="attached", timeout=timeout_ms)


def goto(page, base_url: str, url_path: str = "", timeout_ms: float = 60_000) -> None:
    """Open one of the app's pages (``""`` = the start page) and wait for it."""
    page.goto(f"{base_url}/{url_path}")
    wait_for_app(page, timeout_ms)


def offline_page(browser, width: int = 1024, height: int = 768):
    """``(context, page)``: a new context of that viewport whose requests that leave 127.0.0.1 are aborted."""
    context = browser.new_context(viewport={"width": width, "height": height})
    context.route(LOCAL, lambda route: route.abort())
    return context, context.new_page()


def settle(page, pause_ms: int = 700, timeout_ms: float = 120_000) -> None:
    """Idle, and still idle a moment later, three times over (a redraw can start a second one: a press's
    callback reruns the whole app, a fragment hands over to the page)."""
    for _ in range(3):
        wait_for_app(page, timeout_ms)
        page.wait_for_timeout(pause_ms)
    wait_for_app(page, timeout_ms)


def shot(page, name: str) -> None:
    """Keep a full-page screenshot ``NAME.png`` in ``$AMLKD_SCREENSHOTS`` when that is set."""
    folder = os.environ.get("AMLKD_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def assert_no_exception(page) -> None:
    """Fail with the exception's text when the page shows one."""
    found = page.locator('[data-testid="stException"]')
    if found.count():
        pytest.fail(f"the page shows an exception: {found.first.inner_text()[:2000]}")


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def app_server(tmp_path_factory):
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    if find_chromium() is None:
        pytest.skip("no Chromium found (apt-get install -y chromium)")
    with serve_app(tmp_path_factory.mktemp("browser_runs")) as server:
        yield server


@pytest.fixture(scope="session")
def browser(app_server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(**chromium_launch_args())
        yield chromium
        chromium.close()


@pytest.fixture
def app_page(app_server, browser):
    context = browser.new_context(viewport={"width": 1500, "height": 1000})
    blocked: list[str] = []

    def abort(route) -> None:
        blocked.append(route.request.url)
        route.abort()

    context.route(LOCAL, abort)
    page = context.new_page()
    page.blocked = blocked
    goto(page, app_server)
    yield page
    context.close()
