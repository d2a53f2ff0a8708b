"""API and secret scenarios of issue 8: #26 auth on every route and method, #27 path
traversal, #28 secrets never leave the step's own output, #29 every listener binds the
configured host. The route matrices of tests/api are collected here too (imported, not
copied); the real-server tests start `dagloop server` / `start-all` processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.api.conftest import client, free_port, home  # noqa: F401  (fixtures)
from tests.api.test_auth import test_auth_matrix as test_26_auth_matrix
from tests.api.test_auth import (
    test_secrets_never_appear_in_any_response as test_28_server_secrets_not_in_responses,
)
from tests.api.test_traversal import test_traversal_attempts_are_refused as test_27_traversal
from tests.faults.conftest import (
    HEARTBEAT_TIMEOUT,
    home_of,
    run_row,
    spawn,
    step_pgid,
    write_dag,
)
from tests.faults.invariants import CANARY, assert_invariants, assert_no_leaks, processes_of
from tests.helpers import run_cli, wait_until

__all__ = ["test_26_auth_matrix", "test_27_traversal", "test_28_server_secrets_not_in_responses"]

pytestmark = pytest.mark.timeout(60)

ROUTES = [
    "/dags",
    "/dags/s",
    "/dags/s/spec",
    "/dags/s/dag-runs",
    "/dag-runs",
    "/dag-runs/s/latest",
    "/dag-runs/s/latest/log",
    "/dag-runs/s/latest/steps/show/log",
    "/dag-runs/s/latest/outputs",
    "/queues",
    "/services/scheduler",
    "/plan",
    "/metrics",
    "/openapi.yaml",
]


def _get(url: str, *, method: str = "GET", token: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _server(env: dict[str, str], procs: list[subprocess.Popen[bytes]], verb: str) -> str:
    for _ in range(3):
        port = free_port()
        env["DAGU_PORT"] = str(port)
        p = spawn(env, procs, verb)
        url = f"http://127.0.0.1:{port}/api/v2"

        def up(p: subprocess.Popen[bytes] = p, url: str = url) -> bool:
            if p.poll() is not None:
                return True
            try:
                return _get(url + "/health")[0] == 200
            except OSError:
                return False

        wait_until(up, 20)
        if p.poll() is None:
            return url
    raise RuntimeError(f"dagloop {verb} did not start")


SECRET_DAG = """
params:
  - DB_PASSWORD: none
steps:
  - name: show
    command: sh -c 'echo "param=$DB_PASSWORD dotenv=$API_KEY"; env'
"""


def test_28_secrets_appear_nowhere_but_the_steps_own_output(
    fenv: dict[str, str], procs: list[subprocess.Popen[bytes]]
) -> None:
    """The controller's token (CANARY in fenv) reaches no step, log, row or body; a secret
    param and a dotenv value appear only in the step's own output."""
    param_secret = "param-canary-51c2e7"
    dotenv_secret = "dotenv-canary-8d0a4b"
    write_dag(fenv, "s", SECRET_DAG)
    (home_of(fenv) / "dags" / ".env").write_text(f"API_KEY={dotenv_secret}\n")
    code, _out, err = run_cli("start", "-q", "s", "--", f"DB_PASSWORD={param_secret}", env=fenv)
    assert code == 0, err
    row = run_row(fenv, "s")
    assert row is not None
    step_out = Path(str(row["log_file"])).parent / "show.out"
    text = step_out.read_text()
    assert f"param={param_secret} dotenv={dotenv_secret}" in text
    assert CANARY not in text  # the controller's credentials never enter a step's env
    url = _server(fenv, procs, "server")
    bodies = [_get(url + r, token=CANARY)[1] for r in ROUTES]
    assert all(b"show" in b for b in bodies[1:3])
    assert_no_leaks(home_of(fenv), CANARY, api_bodies=bodies, allowed_files=[step_out])
    procs[-1].send_signal(signal.SIGTERM)
    procs[-1].wait(timeout=10)
    assert_invariants(home_of(fenv), heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)


def test_28_secret_params_and_dotenv_values_appear_only_in_the_steps_output(
    fenv: dict[str, str], procs: list[subprocess.Popen[bytes]]
) -> None:
    """A secret-named param is stored as `DB_PASSWORD=*****`; neither it nor a dotenv value
    is in the run log, the database, any API body (the run log's route included), `status`,
    `dry` or a /proc cmdline; only the step's own output has them."""
    param_secret = "param-canary-51c2e7"
    dotenv_secret = "dotenv-canary-8d0a4b"
    write_dag(fenv, "s", SECRET_DAG)
    (home_of(fenv) / "dags" / ".env").write_text(f"API_KEY={dotenv_secret}\n")
    code, _out, err = run_cli("start", "-q", "s", "--", f"DB_PASSWORD={param_secret}", env=fenv)
    assert code == 0, err
    row = run_row(fenv, "s")
    assert row is not None
    assert json.loads(str(row["params"])) == ["DB_PASSWORD=*****"]
    step_out = Path(str(row["log_file"])).parent / "show.out"
    assert f"param={param_secret} dotenv={dotenv_secret}" in step_out.read_text()
    texts = [
        run_cli("status", "s", env=fenv)[1],
        run_cli("status", "s", "--json", env=fenv)[1],
        run_cli("dry", "s", "--", f"DB_PASSWORD={param_secret}", env=fenv)[1],
        run_cli("dry", "--json", "s", "--", f"DB_PASSWORD={param_secret}", env=fenv)[1],
    ]
    assert "DB_PASSWORD=*****" in texts[0] and "DB_PASSWORD=*****" in texts[2]
    url = _server(fenv, procs, "server")
    bodies = [_get(url + r, token=CANARY)[1] for r in ROUTES if not r.endswith("/steps/show/log")]
    for secret in (param_secret, dotenv_secret):
        assert_no_leaks(
            home_of(fenv), secret, api_bodies=[*bodies, *texts], allowed_files=[step_out]
        )
    procs[-1].send_signal(signal.SIGTERM)
    procs[-1].wait(timeout=10)
    assert_invariants(home_of(fenv), heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)


def _environ(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""


def test_28_queued_run_gets_its_secret_param_through_a_handover_not_the_store(
    fenv: dict[str, str], procs: list[subprocess.Popen[bytes]]
) -> None:
    """`enqueue -- DB_PASSWORD=X`: the row stores `*****`, the value waits in a 0600 file the
    runner deletes on claiming the run; while the step runs, only the step's own processes
    carry it in their environment (not the controller, not the runner)."""
    secret = "queued-canary-3f9a1d"
    dhome = home_of(fenv)
    write_dag(
        fenv,
        "q",
        """
        params:
          - DB_PASSWORD: none
        steps:
          - name: show
            command: sh -c 'echo "param=$DB_PASSWORD"; while [ ! -e go ]; do sleep 0.05; done'
        """,
    )
    code, out, err = run_cli("enqueue", "q", "--", f"DB_PASSWORD={secret}", env=fenv)
    assert code == 0, err
    run_id = out.strip()
    handover = list((dhome / "data" / "handover").iterdir())
    assert len(handover) == 1 and handover[0].stat().st_mode & 0o777 == 0o600
    assert json.loads(str(run_row(fenv, "q")["params"])) == ["DB_PASSWORD=*****"]  # type: ignore[index]
    ctl = spawn(fenv, procs, "scheduler")
    step_out = dhome / "logs" / "q" / run_id / "show.out"
    wait_until(lambda: step_out.exists() and "param=" in step_out.read_text(), 20)
    assert f"param={secret}" in step_out.read_text()
    assert not list((dhome / "data" / "handover").iterdir())  # read once, then deleted
    pgid = wait_until(lambda: step_pgid(fenv, "show"), 5)  # written within 0.1 s of its start
    assert isinstance(pgid, int)
    for pid in processes_of(dhome, [run_id]):
        if secret.encode() in _environ(pid):
            assert os.getpgid(pid) == pgid, f"secret in the environment of pid {pid}"
    (dhome / "dags" / "go").touch()
    wait_until(lambda: (run_row(fenv, "q") or {}).get("status") == 4, 20)
    ctl.send_signal(signal.SIGTERM)
    assert ctl.wait(timeout=20) == 0
    assert_no_leaks(dhome, secret, allowed_files=[step_out])
    assert_invariants(dhome, heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)


@pytest.mark.parametrize("verb", ["server", "start-all"])
def test_26_real_server_every_route_and_method_needs_auth(
    fenv: dict[str, str], procs: list[subprocess.Popen[bytes]], verb: str
) -> None:
    write_dag(fenv, "s", 'steps:\n  - name: show\n    command: "true"\n')
    assert run_cli("start", "-q", "s", env=fenv)[0] == 0
    url = _server(fenv, procs, verb)
    assert _get(url + "/health")[0] == 200
    for route in ROUTES:
        status, body = _get(url + route)
        assert status == 401, (route, status)
        assert CANARY.encode() not in body
        assert _get(url + route, token=CANARY)[0] in (200, 503), route  # /plan: 503 w/o loop
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            assert _get(url + route, method=method, token=CANARY)[0] == 405, (route, method)
    procs[-1].send_signal(signal.SIGTERM)
    assert procs[-1].wait(timeout=20) == 0
    assert_invariants(home_of(fenv), heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)


def _listening_sockets(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every LISTEN TCP socket the process `pid` holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().as_posix()
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            local, state, inode = f[1], f[3], f[9]
            if state != "0A" or inode not in inodes:  # 0A = LISTEN
                continue
            hexaddr, hexport = local.split(":")
            if width == 8:
                addr = ".".join(str(b) for b in reversed(bytes.fromhex(hexaddr)))
            else:
                addr = "v6:" + hexaddr
            out.append((addr, int(hexport, 16)))
    return out


@pytest.mark.parametrize("verb", ["server", "start-all", "scheduler"])
def test_29_every_listener_binds_the_configured_host(
    fenv: dict[str, str], procs: list[subprocess.Popen[bytes]], verb: str
) -> None:
    if verb == "scheduler":
        p = spawn(fenv, procs, verb)
        wait_until(lambda: (home_of(fenv) / "data" / "controller.lock").exists(), 10)
        port = None
    else:
        _server(fenv, procs, verb)
        p = procs[-1]
        port = int(fenv["DAGU_PORT"])
    socks = _listening_sockets(p.pid)
    if port is None:
        assert socks == []  # the controller alone listens on nothing
    else:
        assert socks == [("127.0.0.1", port)], socks  # no hidden port, no 0.0.0.0
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=20) == 0
    assert_invariants(home_of(fenv), heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)


def test_28_status_json_and_run_details_carry_no_controller_secret(fenv: dict[str, str]) -> None:
    write_dag(fenv, "s", 'steps:\n  - name: show\n    command: "env"\n')
    assert run_cli("start", "-q", "s", env=fenv)[0] == 0
    code, out, _ = run_cli("status", "s", "--json", env=fenv)
    assert code == 0 and CANARY not in out
    assert "show" in json.dumps(json.loads(out))
    assert_invariants(home_of(fenv), heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)
