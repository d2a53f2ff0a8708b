"""The fork-server's line protocol, shared by its client and its server.

Requests, one JSON object a line on the server's stdin (`encode_request`):

- launch: `{"seq", "row", "argv", "err", "env", "cwd"}`: fork a runner for `argv` (always
  `start_argv`'s shape) with stderr on `err`, the environment changes `env`
  (`env_overrides`) and directory `cwd`; answered `S` or `F`;
- warm: `{"warm": [[file, snapshot], ...], "config"}`: fill the spec cache; no answer;
- prepare: `{"prepare": [[file, snapshot], ...], "env", "cwd", "config", "expire_seconds"}`:
  fork runners that set themselves up and wait for the launch of their file; no answer.

Answers, one line each on the server's stdout: `R` (ready, imports done), `S <seq> <pid>
<start ticks or ->` (request `seq` forked, or handed to a prepared child), `F <seq> <error>`
(fork failed: not dispatched), `X <pid> <exit code>` (a runner exited).

Callers: `controller.spawn.client` (writes requests, reads answers), `controller.spawn.server`
(the reverse) and `controller.spawn.runner_process` (`start_argv`, also the Popen path's
arguments). Standard library only: the server imports it before its preload.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import NamedTuple

__all__ = [
    "EXITED",
    "FAILED",
    "READY",
    "SERVER_MODULE",
    "STARTED",
    "StartArgs",
    "encode_request",
    "env_overrides",
    "parse_start_argv",
    "start_argv",
]

# `python -m SERVER_MODULE --parent PID` runs the server (the client starts it by this name, so
# it never imports the server's code).
SERVER_MODULE = "controller.spawn.server"

READY = "R"
STARTED = "S"
FAILED = "F"
EXITED = "X"


class StartArgs(NamedTuple):
    """What a runner's `dagloop start` arguments name: the QUEUED row's run id, its DAG file,
    and the config file of the controller (None: from the environment)."""

    run_id: str
    file: str
    config: str | None


def start_argv(run_id: str, file: str, config_file: str | None) -> list[str]:
    """The `dagloop` arguments of a runner for a QUEUED row (the Popen path runs them as
    `python -m controller ...`; the fork-server reads them back with `parse_start_argv`)."""
    argv = ["start", "-q", "--run-id", run_id]
    if config_file is not None:
        argv += ["-c", config_file]
    argv.append(file)
    return argv


def parse_start_argv(argv: object) -> StartArgs | None:
    """The inverse of `start_argv`: its fields for exactly that shape (`start -q --run-id ID
    [-c CONFIG] FILE`), else None. A value `dagloop start` would read as an option (empty, or
    starting with '-') is not that shape either."""
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        return None
    if len(argv) not in (5, 7) or argv[:3] != ["start", "-q", "--run-id"]:
        return None
    config = None
    if len(argv) == 7:
        if argv[4] != "-c":
            return None
        config = argv[5]
    run_id, file = argv[3], argv[-1]
    if any(not v or v.startswith("-") for v in (run_id, file, config or "x")):
        return None
    return StartArgs(run_id, file, config)


def env_overrides(base: Mapping[str, str], env: Mapping[str, str]) -> dict[str, str | None]:
    """What turns `base` into `env`: changed or new values, and None for removed names."""
    out: dict[str, str | None] = {k: v for k, v in env.items() if base.get(k) != v}
    out.update({k: None for k in base if k not in env})
    return out


def encode_request(request: Mapping[str, object]) -> bytes:
    """One request line."""
    return json.dumps(request).encode() + b"\n"
