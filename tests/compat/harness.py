"""Side-by-side compatibility harness: run a DAG on dagloop or on the real Dagu 1.30.2.

Owns the case list (`tests/compat/dags/*.yaml`), the per-case directives, the isolated
`DAGU_HOME` each run gets, and the *normalised result* both engines are reduced to:

    {"status": label, "exit_code": rc of `start`, "nodes": {step: label},
     "handlers": {"onExit": label, ...}, "outputs": {...},
     "counts": {step: {"retryCount": n, "doneCount": n}}}   # steps with retry/repeat policies

Used by `record_golden.py` (writes `golden/<case>.json` from the peer binary),
`test_compat.py` (compares dagloop with the golden files and, when present, the live peer)
and `bench/run_bench.py` (peer discovery and the home layout).

Per-case directives are YAML comments at the top of a DAG file:
    # compat-params: A=1 two        -> passed after `--` to `start`
    # compat-env: MYSECRET=x        -> added to the OS environment of the engine
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

COMPAT_DIR = Path(__file__).resolve().parent
DAGS_DIR = COMPAT_DIR / "dags"
GOLDEN_DIR = COMPAT_DIR / "golden"
REPO_ROOT = COMPAT_DIR.parent.parent

DEFAULT_PEER = Path("/tmp/dagu/node_modules/@dagu-org/dagu-linux-x64/bin/dagu")

# Dagu's numeric codes (reference §4.1); code 5 means different things for runs and nodes.
RUN_LABELS = {
    0: "not_started",
    1: "running",
    2: "failed",
    3: "aborted",
    4: "succeeded",
    5: "queued",
    6: "partially_succeeded",
    7: "waiting",
    8: "rejected",
}
NODE_LABELS = {
    0: "not_started",
    1: "running",
    2: "failed",
    3: "aborted",
    4: "succeeded",
    5: "skipped",
    6: "partially_succeeded",
    7: "waiting",
    8: "rejected",
}
HANDLER_KEYS = ("onInit", "onSuccess", "onFailure", "onCancel", "onExit")

# A whole case must finish well within this on either engine (each DAG runs < 3 s on Dagu).
RUN_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class Case:
    """One DAG file of the corpus and its directives."""

    name: str
    path: Path
    params: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Outcome:
    """What one engine did with one case: the normalised result plus raw material for errors."""

    normalised: dict[str, Any]
    stdout: str
    stderr: str


def find_peer() -> Path | None:
    """The Dagu 1.30.2 binary: `$DAGU_PEER_BIN`, else the default npm location, else None."""
    candidate = os.environ.get("DAGU_PEER_BIN")
    path = Path(candidate) if candidate else DEFAULT_PEER
    if path.is_file() and os.access(path, os.X_OK):
        return path
    return None


def load_cases() -> list[Case]:
    """Every `dags/*.yaml` with its `# compat-…` directives, sorted by name."""
    cases = []
    for path in sorted(DAGS_DIR.glob("*.yaml")):
        params: list[str] = []
        env: dict[str, str] = {}
        for line in path.read_text().splitlines():
            if not line.startswith("#"):
                break
            body = line.lstrip("#").strip()
            if body.startswith("compat-params:"):
                params = shlex.split(body.partition(":")[2])
            elif body.startswith("compat-env:"):
                for token in shlex.split(body.partition(":")[2]):
                    key, _, value = token.partition("=")
                    env[key] = value
        cases.append(Case(name=path.stem, path=path, params=params, env=env))
    return cases


def prepare_home(root: Path) -> Path:
    """A fresh DAGU_HOME under `root` whose dags/ is a copy of the corpus (incl. fixtures/).

    Steps write counter and lock files into their working directory, so every run gets its own
    copy; the committed corpus is never written to.
    """
    home = root / "home"
    shutil.copytree(DAGS_DIR, home / "dags")
    (home / "data").mkdir()
    (home / "logs").mkdir()
    return home


def engine_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A small, deterministic OS environment for an engine process.

    HOME and PATH are kept (python3 in steps may be a pyenv shim that needs them); every other
    variable of the caller is dropped so nothing from the developer's machine changes results.
    """
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "SHELL": "/bin/bash",
        "DAGU_HOME": str(home),
        # Only for `python -m controller`; PYTHONPATH is not passed on to steps by either engine.
        "PYTHONPATH": str(REPO_ROOT),
    }
    if extra:
        env.update(extra)
    return env


# ---------------------------------------------------------------------------------------------
# Dagu (peer)


def run_peer(peer: Path, case: Case, root: Path) -> Outcome:
    """Run `dagu start FILE [-- params]` in an isolated home and normalise its records."""
    home = prepare_home(root)
    dag_file = home / "dags" / case.path.name
    argv = [str(peer), "start", str(dag_file)]
    if case.params:
        argv += ["--", *case.params]
    proc = subprocess.run(
        argv,
        env=engine_env(home, case.env),
        cwd=home,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
    )
    try:
        status, outputs = read_peer_records(home)
    except LookupError:
        # Dagu refused the DAG (load or validation error) before recording any run.
        return Outcome(
            normalised=invalid_result(proc.returncode), stdout=proc.stdout, stderr=proc.stderr
        )
    return Outcome(
        normalised=normalise_peer(status, outputs, proc.returncode),
        stdout=proc.stdout,
        stderr=proc.stderr,
    )


def read_peer_records(home: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The last parseable status.jsonl line and outputs.json of the single top-level run."""
    runs = [
        p
        for p in (home / "data" / "dag-runs").glob("*/dag-runs/*/*/*/dag-run_*/attempt_*/")
        if p.is_dir()
    ]
    if not runs:
        raise LookupError(f"no Dagu run recorded under {home}")
    if len(runs) != 1:
        raise RuntimeError(f"expected one top-level Dagu run under {home}, found {runs}")
    attempt = runs[0]
    status: dict[str, Any] = {}
    status_file = attempt / "status.jsonl"
    if not status_file.exists():
        # Seen with a dependency cycle: Dagu creates the attempt dir, then panics.
        raise LookupError(f"no status.jsonl in {attempt}")
    for line in status_file.read_text().splitlines():
        try:
            status = json.loads(line)
        except ValueError:
            continue  # a torn last write is ignored, as Dagu's reader does
    outputs: dict[str, Any] = {}
    outputs_file = attempt / "outputs.json"
    if outputs_file.exists():
        outputs = json.loads(outputs_file.read_text()).get("outputs") or {}
    return status, outputs


def invalid_result(rc: int) -> dict[str, Any]:
    """The normalised result of a DAG the engine refused to run (no run recorded)."""
    return {
        "status": "invalid",
        "exit_code": rc,
        "nodes": {},
        "handlers": {},
        "outputs": {},
        "counts": {},
    }


def _policy_steps(nodes: list[dict[str, Any]]) -> list[str]:
    return [
        n["step"]["name"]
        for n in nodes
        if n["step"].get("retryPolicy") or n["step"].get("repeatPolicy")
    ]


def normalise_peer(status: dict[str, Any], outputs: dict[str, Any], rc: int) -> dict[str, Any]:
    """Reduce Dagu's status.jsonl record (numeric codes) to the normalised result."""
    nodes = status.get("nodes") or []
    counts = {}
    for node in nodes:
        if node["step"]["name"] in _policy_steps(nodes):
            counts[node["step"]["name"]] = {
                "retryCount": int(node.get("retryCount") or 0),
                "doneCount": int(node.get("doneCount") or 0),
            }
    return {
        "status": RUN_LABELS[int(status["status"])],
        "exit_code": rc,
        "nodes": {n["step"]["name"]: NODE_LABELS[int(n.get("status") or 0)] for n in nodes},
        "handlers": {
            key: NODE_LABELS[int(status[key].get("status") or 0)]
            for key in HANDLER_KEYS
            # Dagu records handlers that never ran as not_started; dagloop omits them.
            if status.get(key) and int(status[key].get("status") or 0) != 0
        },
        "outputs": outputs,
        "counts": counts,
    }


# ---------------------------------------------------------------------------------------------
# dagloop


def run_dagloop(case: Case, root: Path) -> Outcome:
    """Run `python -m controller start --json FILE [-- params]` in an isolated home."""
    home = prepare_home(root)
    dag_file = home / "dags" / case.path.name
    argv = [sys.executable, "-m", "controller", "start", "--json", str(dag_file)]
    if case.params:
        argv += ["--", *case.params]
    proc = subprocess.run(
        argv,
        env=engine_env(home, case.env),
        cwd=home,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
    )
    document = last_json_document(proc.stdout)
    if document is None and proc.returncode != 0:
        # Refused before a run existed (load/validation error): comparable with Dagu's refusal.
        return Outcome(
            normalised=invalid_result(proc.returncode), stdout=proc.stdout, stderr=proc.stderr
        )
    if document is None:
        raise RuntimeError(
            f"dagloop printed no JSON document (rc={proc.returncode})\n"
            f"--- stdout ---\n{proc.stdout[-3000:]}\n--- stderr ---\n{proc.stderr[-3000:]}"
        )
    return Outcome(
        normalised=normalise_dagloop(document, proc.returncode),
        stdout=proc.stdout,
        stderr=proc.stderr,
    )


def last_json_document(stdout: str) -> dict[str, Any] | None:
    """The last JSON object on stdout (compact on one line, or pretty-printed from a `{` line)."""
    text = stdout.rstrip()
    try:
        value = json.loads(text)
        return value if isinstance(value, dict) else None
    except ValueError:
        pass
    lines = text.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("{"):
            try:
                value = json.loads("\n".join(lines[i:]))
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


def _label(node: dict[str, Any]) -> str:
    label = node.get("statusLabel")
    if isinstance(label, str):
        return label
    return NODE_LABELS[int(node.get("status") or 0)]


def normalise_dagloop(doc: dict[str, Any], rc: int) -> dict[str, Any]:
    """Reduce dagloop's run-details JSON (Dagu `dagRunDetails` shape) to the normalised result."""
    doc = doc.get("dagRunDetails", doc)
    nodes = doc.get("nodes") or []
    label = doc.get("statusLabel")
    return {
        "status": label if isinstance(label, str) else RUN_LABELS[int(doc.get("status") or 0)],
        "exit_code": rc,
        "nodes": {n["step"]["name"]: _label(n) for n in nodes},
        "handlers": {
            key: _label(doc[key])
            for key in HANDLER_KEYS
            if doc.get(key) and _label(doc[key]) != "not_started"
        },
        "outputs": doc.get("outputs") or {},
        "counts": {
            n["step"]["name"]: {
                "retryCount": int(n.get("retryCount") or 0),
                "doneCount": int(n.get("doneCount") or 0),
            }
            for n in nodes
        },
    }


# ---------------------------------------------------------------------------------------------
# Comparison


def compare(expected: dict[str, Any], got: dict[str, Any]) -> list[str]:
    """Differences between two normalised results, one readable line each (empty = equal).

    `counts` is compared only for the steps the expected side lists (those with a policy).
    Node order (definition order) is compared unless `expected["unordered_nodes"]` is set.
    """
    diffs: list[str] = []
    if expected.get("status") == "invalid":
        # A refused DAG: only "refused, with a non-zero exit" is comparable (Dagu even panics).
        if got.get("status") != "invalid" or not got.get("exit_code"):
            diffs.append(
                f"expected the DAG to be refused (no run, exit != 0), got status "
                f"{got.get('status')!r} exit {got.get('exit_code')!r}"
            )
        return diffs
    for key in ("status", "exit_code"):
        if expected.get(key) != got.get(key):
            diffs.append(f"{key}: expected {expected.get(key)!r}, got {got.get(key)!r}")
    for section in ("nodes", "handlers", "outputs"):
        want = expected.get(section) or {}
        have = got.get(section) or {}
        for name in sorted(set(want) | set(have)):
            if name not in have:
                diffs.append(f"{section}.{name}: expected {want[name]!r}, missing")
            elif name not in want:
                diffs.append(f"{section}.{name}: unexpected {have[name]!r}")
            elif want[name] != have[name]:
                diffs.append(f"{section}.{name}: expected {want[name]!r}, got {have[name]!r}")
        if (
            section == "nodes"
            and not expected.get("unordered_nodes")
            and list(want) != list(have)
            and set(want) == set(have)
        ):
            diffs.append(f"nodes order: expected {list(want)}, got {list(have)}")
    want_counts = expected.get("counts") or {}
    have_counts = got.get("counts") or {}
    for name, counts in sorted(want_counts.items()):
        if have_counts.get(name) != counts:
            diffs.append(f"counts.{name}: expected {counts}, got {have_counts.get(name)}")
    return diffs


def golden_path(case: Case) -> Path:
    """Where the recorded Dagu result of `case` lives."""
    return GOLDEN_DIR / f"{case.name}.json"
