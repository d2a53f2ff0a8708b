"""Shared test helpers: polling instead of sleeps, an isolated DAGU_HOME, the real CLI.

Used by every test tier. Nothing here mocks our own code: `run_cli` starts
`python -m controller` as a real subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

# The repository root, so subprocesses import this checkout even without an install.
REPO_ROOT = Path(__file__).resolve().parent.parent


def wait_until(
    predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.02
) -> object:
    """Poll `predicate` until it returns something truthy; return it or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"condition not met within {timeout} s: {predicate!r}")
        time.sleep(interval)


def group_alive(pgid: int) -> bool:
    """Whether process group `pgid` has a member that is not a zombie.

    Read from /proc rather than `killpg(pgid, 0)`, which also counts zombies that a
    container's init has not reaped yet. Kept apart from `controller.process.group_alive`
    on purpose: the tests must not check the engine with the engine's own code.
    """
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        fields = data[data.rfind(b")") + 2 :].split()
        # fields[0] is the state, fields[2] the process group
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != b"Z":
            return True
    return False


def dagu_home(tmp_path: Path) -> dict[str, str]:
    """An environment for subprocesses with DAGU_HOME=<tmp_path>/home (dags/ created).

    Every DAGU_* variable of the calling environment is removed so that nothing from the
    developer's machine (or ~/.config/dagu) leaks into a test.
    """
    home = tmp_path / "home"
    (home / "dags").mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGU_")}
    env["DAGU_HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def run_cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 30.0,
    input_text: str | None = None,
) -> tuple[int, str, str]:
    """Run `python -m controller ARGS…` as a real subprocess: (exit code, stdout, stderr)."""
    proc = subprocess.run(
        [sys.executable, "-m", "controller", *args],
        env=dict(env) if env is not None else None,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input_text,
        check=False,
    )
    return proc.returncode, proc.stdout, proc.stderr


def api_client(home: Path) -> Any:
    """A `falcon.testing.TestClient` on the read-only API of the DAGU_HOME `home`, as
    `dagloop server` would serve it (imported here: most tests never need the API)."""
    import falcon.testing

    from api.app import create_app
    from controller.catalog import Catalog
    from controller.store.store import Store
    from model.config import load_settings

    settings = load_settings(env={"DAGU_HOME": str(home), "HOME": str(home)})
    app = create_app(
        settings=settings,
        store_factory=lambda: Store(settings.db_path, readonly=True),
        catalog=Catalog(settings.dags_dir, settings.base_config),
        started_at=time.time(),
    )
    return falcon.testing.TestClient(app)
