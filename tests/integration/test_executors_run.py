"""Every executor type the engine accepts runs, end to end, with the system programs the image
installs and only the Python packages the image has; and the image installs what
`deploy/system-packages.txt` declares.

The list of accepted types is read from the engine, so a type accepted later without a runnable
example here fails `test_every_accepted_executor_type_has_an_example`. The image installs
dagloop without its test extras (`pip install .`): each run's imports (`-X importtime`) must
come from the standard library, dagloop itself, or its runtime requirements. The packages file
is the one place the container's system packages are declared: the Dockerfile installs from it
and the README names each of them.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
from collections.abc import Iterator
from importlib.metadata import packages_distributions, requires
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from model.specbase import SUPPORTED_EXECUTORS
from tests.helpers import REPO_ROOT, dagu_home, run_cli
from tests.pg import free_port

PACKAGES_FILE = REPO_ROOT / "deploy" / "system-packages.txt"
DOCKERFILE = REPO_ROOT / "deploy" / "Dockerfile"

# One step of each accepted type ("" is a step without a type); `{http}` and `{smtp}` are the
# ports of the local servers. Each step's stdout must contain its type's marker.
EXAMPLES: dict[str, tuple[str, str]] = {
    "": ("command: echo marker-default", "marker-default"),
    "command": ("type: command\n    command: echo marker-command", "marker-command"),
    "shell": ("type: shell\n    command: echo marker-shell", "marker-shell"),
    "http": (
        "type: http\n    command: GET http://127.0.0.1:{http}/\n    config:\n      silent: true",
        "marker-http",
    ),
    "jq": ('type: jq\n    command: .word\n    script: \'{{"word": "marker-jq"}}\'', "marker-jq"),
    "mail": (
        "type: mail\n    config:\n      from: a@example.com\n      to: b@example.com\n"
        "      subject: marker-mail\n      message: hi",
        "sending email succeed",
    ),
    "dag": ("type: dag\n    call: child", "marker-child"),
    "subworkflow": ("type: subworkflow\n    call: child", "marker-child"),
    "parallel": ("call: child\n    parallel:\n      items: [one]", "marker-child"),
}


OUR_PACKAGES = {"api", "controller", "model"}
_SUB_DAG_TYPES = {"dag", "subworkflow", "parallel"}


def _runtime_distributions() -> set[str]:
    """dagloop's runtime requirements, transitively, without dagloop's extras but with the
    extras it asks of its requirements (`psycopg[binary]`): what the image has."""
    found: set[str] = set()
    todo: list[tuple[str, frozenset[str]]] = [("dagloop", frozenset())]
    while todo:
        dist, extras = todo.pop()
        for text in requires(dist) or []:
            req = Requirement(text)
            wanted = [{"extra": e} for e in ("", *extras)]
            if req.marker is not None and not any(req.marker.evaluate(w) for w in wanted):
                continue  # an extra nobody asked for (or another platform's)
            name = canonicalize_name(req.name)
            if name not in found:
                found.add(name)
                todo.append((name, frozenset(req.extras)))
    return found


def _distributions_we_import(importtime: str) -> set[str]:
    """The installed distributions whose modules our code imports, read from an
    `-X importtime` trace: those our modules import while being imported, and those imported
    at run time once `controller` is (our lazy imports; the interpreter's start-up is not the
    image's). What a library imports in turn is its own business (httpx tries `rich` when it
    is installed, and does without)."""
    # The trace is post-order: a module's imports are printed before it, one level deeper;
    # level 0 is an import made at run time, not by a module being imported.
    parent: dict[str, str] = {}
    pending: dict[int, list[str]] = {}
    at_run_time: list[str] = []
    for indent, name in re.findall(r"^import time:[^|]*\|[^|]*\|( +)(\S+)$", importtime, re.M):
        level = len(indent) // 2
        for child in pending.pop(level + 1, []):
            parent[child] = name
        pending.setdefault(level, []).append(name)
        if level == 0:
            at_run_time.append(name)
    ours = {c for c, p in parent.items() if p.split(".")[0] in OUR_PACKAGES}
    ours.update(at_run_time[at_run_time.index("controller") :])
    tops = {c.split(".")[0] for c in ours} - OUR_PACKAGES
    owners = packages_distributions()
    return {canonicalize_name(d) for top in tops for d in owners.get(top, [])}


def _declared_packages() -> list[str]:
    lines = PACKAGES_FILE.read_text(encoding="utf-8").splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"marker-http"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_port() -> Iterator[int]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.fixture
def smtp_port() -> Iterator[int]:
    from aiosmtpd.controller import Controller

    class Sink:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            return "250 OK"

    controller = Controller(Sink(), hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port
    controller.stop()


def test_every_accepted_executor_type_has_an_example() -> None:
    assert set(EXAMPLES) == SUPPORTED_EXECUTORS


@pytest.mark.parametrize("executor", sorted(EXAMPLES))
def test_accepted_executor_type_runs(
    executor: str, tmp_path: Path, http_port: int, smtp_port: int
) -> None:
    env = dagu_home(tmp_path)
    step, marker = EXAMPLES[executor]
    dag = (
        f"smtp:\n  host: 127.0.0.1\n  port: '{smtp_port}'\nsteps:\n  - name: probe\n    "
        + step.format(http=http_port, smtp=smtp_port)
        + "\n---\nname: child\nsteps:\n  - command: echo marker-child\n"
    )
    (Path(env["DAGU_HOME"]) / "dags" / "probe.yaml").write_text(dag)
    env["PYTHONPROFILEIMPORTTIME"] = "1"  # the run's imports, on stderr

    code, out, err = run_cli("start", "--json", "-q", "probe", env=env, timeout=60)

    assert code == 0, out + err[-3000:]
    assert _distributions_we_import(err) <= _runtime_distributions()
    details = json.loads(out.splitlines()[-1])
    [node] = details["nodes"]
    assert node["statusLabel"] == "succeeded"
    if executor in _SUB_DAG_TYPES:
        return  # the sub-DAG run succeeded: its step printed the marker in its own log
    assert marker in Path(node["stdout"]).read_text(), executor


def test_image_installs_the_declared_system_packages() -> None:
    packages = _declared_packages()
    assert {"jq", "git"} <= set(packages)  # jq steps; git-synced DAG catalogs
    docker = DOCKERFILE.read_text(encoding="utf-8")
    assert "COPY deploy/system-packages.txt" in docker
    assert re.search(r"xargs[^\n]*apt-get install -y --no-install-recommends", docker)
    assert not any(re.search(rf"\b{re.escape(p)}\b", docker) for p in packages), (
        "packages are named in deploy/system-packages.txt only"
    )
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert "deploy/system-packages.txt" in readme
    for package in packages:
        assert f"`{package}`" in readme, package
