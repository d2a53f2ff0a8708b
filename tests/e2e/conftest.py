"""Fixtures of the browser tests: a real `dagloop server` on 127.0.0.1 over an isolated
DAGU_HOME, and Debian's headless Chromium driven by Selenium through /usr/bin/chromedriver.

Nothing is downloaded: the browser and driver are the system's (`apt-get install chromium
chromium-driver`); without them, or without the `selenium` package, the browser tests are
skipped with the reason. Screenshots go to a temporary folder; when a test fails they (and the
page's HTML and console log) are copied to `tests/e2e/artifacts/<test>/` (git-ignored) for CI.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO_ROOT, dagu_home, wait_until

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
)


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium package is not installed (pip install selenium)"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            return f"{path} is missing (apt-get install chromium chromium-driver)"
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A running `dagloop server` and the home it serves."""

    base_url: str
    env: dict[str, str]
    home: Path
    proc: subprocess.Popen[bytes]
    auth: tuple[str, str] | None = None
    log_path: Path = field(default_factory=Path)

    def get_json(self, path: str) -> Any:
        """GET an /api/v2 path as JSON (with the server's credentials, if any)."""
        request = urllib.request.Request(self.base_url + "/api/v2" + path)
        if self.auth is not None:
            import base64

            token = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=5) as resp:
            return json.load(resp)

    def dagloop(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run `dagloop ARGS` on this home, to completion."""
        return subprocess.run(
            [sys.executable, "-m", "controller", *args],
            env=self.env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def _health_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/api/v2/health", timeout=1) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start_server(home_dir: Path, dags: Mapping[str, str], extra_env: Mapping[str, str]) -> Server:
    """Write `dags` into a new DAGU_HOME and start `dagloop server` on a free port."""
    env = dagu_home(home_dir)
    env.update(extra_env)
    home = Path(env["DAGU_HOME"])
    for name, text in dags.items():
        (home / "dags" / name).write_text(text)
    port = free_port()
    log_path = home_dir / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "controller", "server", "-s", "127.0.0.1", "-p", str(port)],
            env=env,
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: proc.poll() is not None or _health_ok(base), timeout=20)
    except TimeoutError:
        stop_process(proc)
        raise
    if proc.poll() is not None:
        raise RuntimeError(f"dagloop server exited {proc.returncode}: {log_path.read_text()}")
    user, password = (
        extra_env.get("DAGU_AUTH_BASIC_USERNAME"),
        extra_env.get("DAGU_AUTH_BASIC_PASSWORD"),
    )
    auth = (user, password) if user and password else None
    return Server(base, env, home, proc, auth, log_path)


def stop_process(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM the process (its group), then SIGKILL if it does not exit within 10 s."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Remember each phase's report on the item, so fixtures know whether the test failed."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="session")
def chrome() -> Iterator[Any]:
    """One headless Chromium for the session (Selenium Manager never runs: explicit paths)."""
    reason = browser_missing()
    if reason is not None:
        pytest.skip(f"browser tests skipped: {reason}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="dagloop-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@dataclass
class Shots:
    """Screenshots of one test, kept when it fails."""

    folder: Path
    driver: Any
    taken: list[Path] = field(default_factory=list)

    def take(self, name: str, *, full_page: bool = True) -> Path:
        """Save a PNG of the page (resized to the page's height when `full_page`)."""
        if full_page:
            height = int(self.driver.execute_script("return document.documentElement.scrollHeight"))
            self.driver.set_window_size(1280, min(max(height + 160, 600), 4000))
        path = self.folder / f"{len(self.taken):02d}-{name}.png"
        self.driver.save_screenshot(str(path))
        self.taken.append(path)
        return path


@pytest.fixture
def shots(chrome: Any, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Shots]:
    """Screenshots under tmp; copied with the page and console log to artifacts on failure.

    With DAGLOOP_SCREENSHOTS=<dir> every screenshot is also copied there (for the README).
    """
    folder = tmp_path / "screenshots"
    folder.mkdir()
    chrome.set_window_size(1280, 900)
    taken = Shots(folder, chrome)
    yield taken
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        dest = ARTIFACTS / request.node.name
        dest.mkdir(parents=True, exist_ok=True)
        try:
            taken.take("at-failure")
            (dest / "page.html").write_text(chrome.page_source)
            (dest / "console.json").write_text(json.dumps(chrome.get_log("browser"), indent=1))
        except Exception as exc:  # the browser itself may be what failed
            (dest / "error.txt").write_text(repr(exc))
        for path in taken.taken:
            shutil.copy2(path, dest / path.name)
    keep = os.environ.get("DAGLOOP_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for path in taken.taken:
            shutil.copy2(path, Path(keep) / path.name.split("-", 1)[1])


def wait_for(
    driver: Any, css: str, *, timeout: float = 15.0, check: Callable[[Any], bool] | None = None
) -> Any:
    """The first element matching `css` (and `check`), polling until it appears."""
    from selenium.webdriver.common.by import By

    def found() -> Any:
        for el in driver.find_elements(By.CSS_SELECTOR, css):
            if check is None or check(el):
                return el
        return None

    return wait_until(found, timeout=timeout, interval=0.1)
